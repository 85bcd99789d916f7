// stargz-ref: the Go reference stargz snapshotter (stargz-snapshotter 0.12, Debian's sources) as a
// containerd proxy snapshotter on a unix socket, for tools/bench only.
//
// The upstream daemon (cmd/containerd-stargz-grpc) is not packaged and its service/ package needs
// the k8s CRI API, which is not packaged either.  This wires the same pieces as
// service.NewStargzSnapshotterService does: the fs (FUSE + remote fetch + cache) with the default
// label source, the overlay-based snapshotter, and containerd's snapshot gRPC service.  The registry
// hosts function is service/resolver's RegistryHostsFromConfig with no mirrors and no credentials
// (a retrying HTTP client; plain HTTP for localhost), copied because that package pulls in the CRI API.
//
//	stargz-ref -root DIR -address SOCK [-no-prefetch] [-no-background-fetch] [-log-level LEVEL]
//
// Build: tools/bench/reference/build.sh (GOPATH mode, GO111MODULE=off).
package main

import (
	"context"
	"flag"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	snapshotsapi "github.com/containerd/containerd/api/services/snapshots/v1"
	"github.com/containerd/containerd/contrib/snapshotservice"
	"github.com/containerd/containerd/log"
	"github.com/containerd/containerd/reference"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/containerd/snapshots/overlay/overlayutils"
	stargzfs "github.com/containerd/stargz-snapshotter/fs"
	"github.com/containerd/stargz-snapshotter/fs/config"
	"github.com/containerd/stargz-snapshotter/fs/layer"
	"github.com/containerd/stargz-snapshotter/fs/source"
	snbase "github.com/containerd/stargz-snapshotter/snapshot"
	rhttp "github.com/hashicorp/go-retryablehttp"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
)

// registryHosts mirrors service/resolver.RegistryHostsFromConfig(Config{}): one host, a retrying
// client with a non-nil Transport (fs/remote type-asserts it), 30 s request timeout.
func registryHosts(ref reference.Spec) ([]docker.RegistryHost, error) {
	client := rhttp.NewClient()
	client.Logger = nil
	tr := client.StandardClient()
	tr.Timeout = 30 * time.Second
	h := docker.RegistryHost{
		Client:       tr,
		Host:         ref.Hostname(),
		Scheme:       "https",
		Path:         "/v2",
		Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
		Authorizer:   docker.NewDockerAuthorizer(docker.WithAuthClient(tr)),
	}
	if localhost, _ := docker.MatchLocalhost(h.Host); localhost {
		h.Scheme = "http"
	}
	return []docker.RegistryHost{h}, nil
}

func main() {
	root := flag.String("root", "/var/lib/stargz-ref", "state directory")
	address := flag.String("address", "/run/stargz-ref.sock", "unix socket for containerd")
	noPrefetch := flag.Bool("no-prefetch", false, "disable prefetch of the landmarked files")
	noBG := flag.Bool("no-background-fetch", false, "disable background fetch of whole layers")
	level := flag.String("log-level", "info", "logrus level")
	flag.Parse()

	lvl, err := logrus.ParseLevel(*level)
	if err != nil {
		logrus.Fatal(err)
	}
	logrus.SetLevel(lvl)
	ctx := log.WithLogger(context.Background(), logrus.NewEntry(logrus.StandardLogger()))

	snRoot := filepath.Join(*root, "snapshotter")
	if err := os.MkdirAll(snRoot, 0700); err != nil {
		log.G(ctx).Fatal(err)
	}
	opq := layer.OverlayOpaqueTrusted
	if userxattr, err := overlayutils.NeedsUserXAttr(snRoot); err == nil && userxattr {
		opq = layer.OverlayOpaqueUser
	}
	cfg := config.Config{NoPrefetch: *noPrefetch, NoBackgroundFetch: *noBG}
	fs, err := stargzfs.NewFilesystem(filepath.Join(*root, "stargz"), cfg,
		stargzfs.WithGetSources(source.FromDefaultLabels(registryHosts)),
		stargzfs.WithOverlayOpaqueType(opq))
	if err != nil {
		log.G(ctx).WithError(err).Fatal("filesystem")
	}
	sn, err := snbase.NewSnapshotter(ctx, snRoot, fs, snbase.AsynchronousRemove)
	if err != nil {
		log.G(ctx).WithError(err).Fatal("snapshotter")
	}

	rpc := grpc.NewServer()
	snapshotsapi.RegisterSnapshotsServer(rpc, snapshotservice.FromSnapshotter(sn))
	_ = os.Remove(*address)
	l, err := net.Listen("unix", *address)
	if err != nil {
		log.G(ctx).WithError(err).Fatal("listen")
	}
	errc := make(chan error, 1)
	go func() { errc <- rpc.Serve(l) }()
	log.G(ctx).Infof("stargz-ref serving on %s (root %s, prefetch %v, background fetch %v)",
		*address, *root, !*noPrefetch, !*noBG)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case s := <-sig:
		log.G(ctx).Infof("%v: shutting down", s)
	case err := <-errc:
		log.G(ctx).WithError(err).Error("gRPC server stopped")
	}
	rpc.Stop()
	// Close unmounts every layer, committed ones included.
	if err := sn.Close(); err != nil {
		log.G(ctx).WithError(err).Error("close")
	}
}
