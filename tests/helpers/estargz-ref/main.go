// estargz-ref: a test helper around the reference eStargz implementation (Go package
// github.com/containerd/stargz-snapshotter/estargz, Debian's 0.12 sources).  It is built in
// GOPATH mode by build.sh next to this file; never commit the binary.
//
// The command line is stable; tests depend on it:
//
//	estargz-ref convert [-chunk-size N] [-level N] [-prioritize FILE] IN.tar OUT.blob
//	    Builds an eStargz blob from IN (tar or tar.gz) with estargz.Build (default options
//	    unless given; -prioritize names a file with one path per line).  Prints three lines:
//	        tocDigest sha256:...
//	        diffID sha256:...        (sha256 of the uncompressed blob)
//	        blobDigest sha256:...
//	    Exit 0 on success, 1 on failure (message on stderr).
//
//	estargz-ref verify BLOB TOCDIGEST
//	    estargz.Open + VerifyTOC(TOCDIGEST), then reads every regular file fully, chunk by
//	    chunk, through the chunk verifiers, and checks each file's "digest".  Also checks
//	    that the whole blob gunzips to a tar whose entries are the TOC's entries followed by
//	    stargz.index.json.  Prints "ok N entries, N files, N bytes" and exits 0, or prints the
//	    first failure on stderr and exits 1.
//
//	estargz-ref list BLOB
//	    Prints the TOC's entries in TOC order, one compact JSON object per line, with the
//	    TOC's field names (name, type, size, modtime, linkName, mode, uid, gid, userName,
//	    groupName, offset, devMajor, devMinor, xattrs, digest, chunkOffset, chunkSize,
//	    chunkDigest) exactly as stored (no normalization).  The blob must pass estargz.Open.
//
//	estargz-ref toc BLOB
//	    Writes the raw TOC JSON (the bytes the TOC digest is computed over) to stdout.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/containerd/stargz-snapshotter/estargz"
	digest "github.com/opencontainers/go-digest"
)

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "estargz-ref: "+format+"\n", args...)
	os.Exit(1)
}

func openSection(path string) (*os.File, *io.SectionReader) {
	f, err := os.Open(path)
	if err != nil {
		die("%v", err)
	}
	st, err := f.Stat()
	if err != nil {
		die("%v", err)
	}
	return f, io.NewSectionReader(f, 0, st.Size())
}

func cmdConvert(args []string) {
	fs := flag.NewFlagSet("convert", flag.ExitOnError)
	chunkSize := fs.Int("chunk-size", 0, "chunk size (0 = reference default)")
	level := fs.Int("level", -100, "gzip level (default: reference default)")
	prio := fs.String("prioritize", "", "file with prioritized paths, one per line")
	fs.Parse(args)
	if fs.NArg() != 2 {
		die("usage: convert [-chunk-size N] [-level N] [-prioritize FILE] IN OUT")
	}
	in, sr := openSection(fs.Arg(0))
	defer in.Close()
	var opts []estargz.Option
	if *chunkSize > 0 {
		opts = append(opts, estargz.WithChunkSize(*chunkSize))
	}
	if *level != -100 {
		opts = append(opts, estargz.WithCompressionLevel(*level))
	}
	if *prio != "" {
		data, err := os.ReadFile(*prio)
		if err != nil {
			die("%v", err)
		}
		var files []string
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				files = append(files, l)
			}
		}
		var missed []string
		opts = append(opts, estargz.WithPrioritizedFiles(files), estargz.WithAllowPrioritizeNotFound(&missed))
	}
	blob, err := estargz.Build(sr, opts...)
	if err != nil {
		die("build: %v", err)
	}
	out, err := os.Create(fs.Arg(1))
	if err != nil {
		die("%v", err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(out, h), blob); err != nil {
		die("write: %v", err)
	}
	if err := blob.Close(); err != nil {
		die("close: %v", err)
	}
	if err := out.Close(); err != nil {
		die("%v", err)
	}
	fmt.Printf("tocDigest %s\n", blob.TOCDigest())
	fmt.Printf("diffID %s\n", blob.DiffID())
	fmt.Printf("blobDigest sha256:%x\n", h.Sum(nil))
}

// readTOC returns the raw TOC JSON of an eStargz blob (gzip footer only).
func readTOC(sr *io.SectionReader) []byte {
	tocOff, footerSize, err := estargz.OpenFooter(sr)
	if err != nil {
		die("footer: %v", err)
	}
	tocSec := io.NewSectionReader(sr, tocOff, sr.Size()-tocOff-footerSize)
	zr, err := gzip.NewReader(tocSec)
	if err != nil {
		die("toc gzip: %v", err)
	}
	zr.Multistream(false)
	tr := tar.NewReader(zr)
	h, err := tr.Next()
	if err != nil {
		die("toc tar: %v", err)
	}
	if h.Name != estargz.TOCTarName {
		die("toc tar entry is %q, want %q", h.Name, estargz.TOCTarName)
	}
	data, err := io.ReadAll(tr)
	if err != nil {
		die("toc read: %v", err)
	}
	return data
}

func cmdList(args []string) {
	if len(args) != 1 {
		die("usage: list BLOB")
	}
	f, sr := openSection(args[0])
	defer f.Close()
	if _, err := estargz.Open(sr); err != nil {
		die("open: %v", err)
	}
	var toc estargz.JTOC
	if err := json.Unmarshal(readTOC(sr), &toc); err != nil {
		die("toc json: %v", err)
	}
	w := bufio.NewWriter(os.Stdout)
	for _, e := range toc.Entries {
		b, err := json.Marshal(e)
		if err != nil {
			die("%v", err)
		}
		w.Write(b)
		w.WriteByte('\n')
	}
	w.Flush()
}

func cmdTOC(args []string) {
	if len(args) != 1 {
		die("usage: toc BLOB")
	}
	f, sr := openSection(args[0])
	defer f.Close()
	os.Stdout.Write(readTOC(sr))
}

func cmdVerify(args []string) {
	if len(args) != 2 {
		die("usage: verify BLOB TOCDIGEST")
	}
	f, sr := openSection(args[0])
	defer f.Close()
	want, err := digest.Parse(args[1])
	if err != nil {
		die("bad TOC digest %q: %v", args[1], err)
	}
	r, err := estargz.Open(sr)
	if err != nil {
		die("open: %v", err)
	}
	v, err := r.VerifyTOC(want)
	if err != nil {
		die("verify TOC: %v", err)
	}
	var toc estargz.JTOC
	if err := json.Unmarshal(readTOC(sr), &toc); err != nil {
		die("toc json: %v", err)
	}
	if digest.FromBytes(readTOC(sr)) != want {
		die("TOC JSON digest mismatch")
	}
	nfiles, nbytes := 0, int64(0)
	seen := map[string]bool{}
	for _, te := range toc.Entries {
		if te.Type != "reg" {
			continue
		}
		name := te.Name
		if seen[name] {
			die("regular file %q appears twice in the TOC", name)
		}
		seen[name] = true
		e, ok := r.Lookup(name)
		if !ok {
			die("lookup %q failed", name)
		}
		fr, err := r.OpenFile(name)
		if err != nil {
			die("open %q: %v", name, err)
		}
		whole := sha256.New()
		for off := int64(0); off < e.Size; {
			ce, ok := r.ChunkEntryForOffset(name, off)
			if !ok {
				die("%q: no chunk for offset %d", name, off)
			}
			if ce.ChunkOffset != off || ce.ChunkSize <= 0 {
				die("%q: chunk at %d has offset %d size %d", name, off, ce.ChunkOffset, ce.ChunkSize)
			}
			cv, err := v.Verifier(ce)
			if err != nil {
				die("%q: chunk at %d: %v", name, off, err)
			}
			buf := make([]byte, ce.ChunkSize)
			if n, err := fr.ReadAt(buf, ce.ChunkOffset); err != nil && !(errors.Is(err, io.EOF) && int64(n) == ce.ChunkSize) {
				die("%q: read chunk at %d: %v", name, off, err)
			}
			cv.Write(buf)
			if !cv.Verified() {
				die("%q: chunk at %d fails its chunkDigest", name, off)
			}
			whole.Write(buf)
			off += ce.ChunkSize
		}
		if got := fmt.Sprintf("sha256:%x", whole.Sum(nil)); e.Digest != "" && got != e.Digest {
			die("%q: content digest %s, TOC says %s", name, got, e.Digest)
		}
		nfiles++
		nbytes += e.Size
	}
	// The whole blob must gunzip to a tar whose entries follow the TOC.
	zr, err := gzip.NewReader(io.NewSectionReader(sr, 0, sr.Size()))
	if err != nil {
		die("gunzip: %v", err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			die("blob tar: %v", err)
		}
		names = append(names, jsonRoundTrip(h.Name))
		if _, err := io.Copy(io.Discard, tr); err != nil {
			die("blob tar %q: %v", h.Name, err)
		}
	}
	if _, err := io.Copy(io.Discard, zr); err != nil {
		die("gunzip trailer: %v", err)
	}
	var tocNames []string
	for _, e := range toc.Entries {
		if e.Type != "chunk" {
			tocNames = append(tocNames, e.Name)
		}
	}
	tocNames = append(tocNames, estargz.TOCTarName)
	if strings.Join(names, "\x00") != strings.Join(tocNames, "\x00") {
		die("tar entries (%d) differ from TOC entries (%d)", len(names), len(tocNames))
	}
	if len(names) < 2 || !bytes.Contains([]byte(names[0]+names[len(names)-2]), []byte("landmark")) &&
		!containsLandmark(names) {
		die("no landmark entry")
	}
	fmt.Printf("ok %d entries, %d files, %d bytes\n", len(toc.Entries), nfiles, nbytes)
}

// jsonRoundTrip returns name as it reads back from JSON (invalid UTF-8 becomes U+FFFD), the
// form a TOC can hold.
func jsonRoundTrip(name string) string {
	b, _ := json.Marshal(name)
	var s string
	json.Unmarshal(b, &s)
	return s
}

func containsLandmark(names []string) bool {
	for _, n := range names {
		if n == estargz.PrefetchLandmark || n == estargz.NoPrefetchLandmark {
			return true
		}
	}
	return false
}

func main() {
	if len(os.Args) < 2 {
		die("usage: estargz-ref convert|verify|list|toc ...")
	}
	switch os.Args[1] {
	case "convert":
		cmdConvert(os.Args[2:])
	case "verify":
		cmdVerify(os.Args[2:])
	case "list":
		cmdList(os.Args[2:])
	case "toc":
		cmdTOC(os.Args[2:])
	default:
		die("unknown command %q", os.Args[1])
	}
}
