/* A link meter: what the path to one registry host carries, measured as data flows.
 *
 * net/ feeds it (net/blob.c: each range response's time to first byte, and its body bytes as
 * they arrive); fs/ reads it (fs/layer_prefetch.c: how much speculative data may be on the
 * wire, whether streaming a whole layer is cheaper than chasing its misses).  It lives in the
 * core because both sides use it and fs/ and net/ never include each other; the object
 * belongs to a registry host (net/pool.h: one per host, shared by every layer fetched from
 * it, since the link is the host's, not the layer's) and reaches fs/ through the range
 * source (daemon/core/range_source.h, `link`).  Pure arithmetic on times the caller passes:
 * no clock, no I/O, so unit tests feed it synthetic samples.
 *
 *  - RTT: the time to first byte of range requests (request sent -> response head), an EWMA
 *    (1/8, as TCP's SRTT).  It includes the server's think time, which is what a miss costs.
 *  - Throughput: bytes over the time the link was busy delivering bodies.  Concurrent
 *    transfers share one window (they share the link), which closes when no body streams any
 *    more, or every SG_LINK_SAMPLE_NS while one does; a window with fewer than
 *    SG_LINK_SAMPLE_MIN_BYTES says little and is dropped.  The estimate rises fast (1/2) and
 *    falls slowly (1/8): a window in which we asked for little (app-limited) understates the
 *    link, and a low estimate would keep us asking for little.
 *
 * Until the first samples, the RTT is SG_LINK_DEFAULT_RTT_NS and the throughput unknown: the
 * in-flight cap is SG_LINK_DEFAULT_CAP and the link is not fast. */
#ifndef STARGZD_CORE_LINK_METER_H
#define STARGZD_CORE_LINK_METER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/core/list.h"

/* Speculative bytes in flight are bounded by what the link carries in this long: an
 * on-demand request that starts behind them waits at most about that (one chunk transfer on
 * the links we target), not a whole layer. */
#define SG_LINK_INFLIGHT_NS (150ull * 1000000u)
#define SG_LINK_DEFAULT_CAP ((size_t)1 << 20)      /* before any throughput sample */
#define SG_LINK_MIN_CAP ((size_t)256 << 10)
#define SG_LINK_MAX_CAP ((size_t)64 << 20)
#define SG_LINK_DEFAULT_RTT_NS (50ull * 1000000u)
#define SG_LINK_SAMPLE_NS (100ull * 1000000u)
#define SG_LINK_SAMPLE_MIN_BYTES ((uint64_t)128 << 10)
/* Streaming a layer is "fast" when it takes no longer than this many of the link's lowest
 * round trips: a cold start chases about that many dependent misses through a layer (python
 * importing an application's stdlib set: 24 misses of 1.5-2 round trips each).  The lowest
 * round trip, not the smoothed one, which grows with the bytes queued on a busy link: on it
 * the decision depended on the moment (gcc's 50 MB base layer streamed in one run of three,
 * 6.6 s against 4.8), and so did the python layer's (17 MB, 34 round trips of 40 ms), which
 * the estimate's own overshoot (sg_link_meter_begin) made "fast" in most runs, not all. */
#define SG_LINK_FAST_RTTS 48
/* Requests fetching ahead of readers in flight on one link at most: the registry client
 * keeps 8 connections per host (net/registry.c) and serves waiting requests in order, so 3
 * stay free for on-demand reads, which then never queue behind a replay or a stream. */
#define SG_LINK_AHEAD_REQUESTS 5u
/* Precise speculation (the libraries an ELF file in use needs, fs/layer_spec.h) may take this
 * many more: it is read next, almost always; one connection still stays free. */
#define SG_LINK_PRECISE_EXTRA 2u
/* Fetching ahead in order: a new request goes out when what the link still owes would be
 * delivered within one and a half of the lowest round trips seen plus this long, so that its
 * first byte arrives about as the last of the others do.  Requests sent any earlier share
 * the link with the ones before them and all finish late: two prefetch requests of 3.5 and
 * 4.2 MB sent together took 0.87 and 0.93 s on a link that carries the first alone in 0.3 s,
 * and the interpreter's first chunk, in the first, waited 0.59 s.  The lowest round trip,
 * not the smoothed one: a request's time to first byte grows with the bytes queued before it
 * on a busy link (0.13 s for a 1.4 kB one, on a 40 ms link), and a horizon that grows with
 * the queue lets it grow more.  Half a round trip more than that, because one round trip
 * left the link idle between requests where it is long: on the far link (100 ms) the
 * optimized python image took 3.2 s against 2.9. */
#define SG_LINK_PACE_NS (10ull * 1000000u)
#define SG_LINK_PACE_MIN_WAIT_NS (2ull * 1000000u)

struct sg_link_meter {
	uint64_t rtt_ns;              /* EWMA; 0 = no sample yet */
	double bytes_per_s;           /* 0 = no sample yet */
	uint64_t rtt_samples, bw_samples;
	uint64_t rtt_min_ns;          /* the lowest time to first byte; 0 = no sample yet */
	/* The current busy window. */
	unsigned active;              /* bodies streaming */
	uint64_t win_start_ns, win_bytes;
	/* Who uses the link now, across every layer fetched from this host: on-demand requests
	 * in flight and when the last one started or ended, and the bytes of requests fetching
	 * ahead of readers in flight.  One layer's background fetch or stream must yield to
	 * another layer's on-demand read, since they share the link. */
	unsigned ondemand_inflight;
	uint64_t last_ondemand_ns;
	size_t ahead_inflight;
	unsigned ahead_requests;
	/* Readers' own fetches in flight (ondemand_inflight also counts a replay that holds the
	 * link): while there are any, the requests fetching ahead shrink their receive windows
	 * (net/blob.c).  And the body bytes those requests received, ever, and of those the
	 * speculative ones' (SG_RANGE_SPEC): what arrived beside one reader's fetch is the
	 * difference across it (its fetch trace's "beside" and "beside_spec"). */
	unsigned reads_inflight;
	uint64_t ahead_bytes_in, spec_bytes_in;
	/* Bytes asked of the host by every range request in flight that have not arrived yet:
	 * what the link owes (net/blob.c counts them as requests go out and bodies arrive). */
	uint64_t owed;
	/* The layers replaying a startup profile from this host: fs/layer_prefetch.c gives the
	 * link to the one whose next chunks the recorded workload read first.  Each entry is
	 * unlinked by its layer before the layer goes (a meter outlives the layers using it). */
	struct sg_list replayers;
	/* The layers waiting for room to fetch ahead on this link (their room_node): the end of
	 * any request fetching ahead on it, whichever layer's, lets them look again.  Waiting
	 * for their own next batch end left the link idle for a round trip while another
	 * layer's finished request had freed the room (python + profile: 90 ms). */
	struct sg_list room_waiters;
	/* The workload reading this host's layers now, for the profiles they record: when its
	 * first new chunk was read (the clock every layer's times count from) and its last
	 * (every layer's recording lasts until the workload, not the layer, goes quiet). */
	uint64_t burst_start_ns, burst_last_ns;
};

void sg_link_meter_init(struct sg_link_meter *m);

/* A response head arrived at now_ns for a request sent at sent_ns. */
void sg_link_meter_first_byte(struct sg_link_meter *m, uint64_t sent_ns, uint64_t now_ns);
/* A body starts streaming (its head seen at now_ns, for a request sent at sent_ns) / n of its
 * bytes arrived / it ended (complete, failed or cancelled): every begin has exactly one end.
 * A window that opens with a body starts no later than the earliest its first byte can have
 * arrived (sent + the lowest time to first byte seen, or sent before any): when the loop was
 * busy, the head and much of the body may have waited in the socket already, and a window
 * from the head's processing would count their bytes as delivered in no time (a 600 KiB
 * body, buffered, "arrived" at hundreds of MB/s and put the estimate at 2.6x the link's, so
 * fetching ahead kept 4 MB in flight and an on-demand read of 100 KB waited 0.35 s behind
 * it). */
void sg_link_meter_begin(struct sg_link_meter *m, uint64_t sent_ns, uint64_t now_ns);
void sg_link_meter_bytes(struct sg_link_meter *m, size_t n, uint64_t now_ns);
void sg_link_meter_end(struct sg_link_meter *m, uint64_t now_ns);

/* A reader's own fetch starts (+1) or ends (-1): reads_inflight. */
void sg_link_meter_reads(struct sg_link_meter *m, int delta);
/* What the link holds in its lowest round trip (the smoothed one before any): bytes per
 * second times that; 0 while the throughput is unknown or m is NULL. */
uint64_t sg_link_meter_bdp(const struct sg_link_meter *m);
/* An on-demand request starts (+1) or ends (-1) at now_ns. */
void sg_link_meter_ondemand(struct sg_link_meter *m, int delta, uint64_t now_ns);
/* A reader used bytes fetched ahead of it at now_ns: the workload is reading, as busy as
 * with a miss, only better served; background fetch waits its quiet gap after it too
 * (sg_link_meter_ondemand_busy). */
void sg_link_meter_reader(struct sg_link_meter *m, uint64_t now_ns);
/* A request fetching ahead of readers, of `bytes`, starts (+1) or ends (-1). */
void sg_link_meter_ahead(struct sg_link_meter *m, int delta, size_t bytes);
/* Must fetching ahead wait: is an on-demand request in flight, or did one end less than
 * gap_ns ago?  *ret_wait_ns: how long until the gap is over (0 while one is in flight). */
bool sg_link_meter_ondemand_busy(const struct sg_link_meter *m, uint64_t gap_ns, uint64_t now_ns,
				 uint64_t *ret_wait_ns);

/* A request asks for n more bytes / n of them arrived, or will not (the request ended,
 * failed or was cancelled; more than is owed counts as all). */
void sg_link_meter_owe(struct sg_link_meter *m, uint64_t n);
void sg_link_meter_repay(struct sg_link_meter *m, uint64_t n);
/* Must a request fetching ahead wait for the link to drain: does it owe more than it
 * delivers in 1.5 of the lowest round trips seen plus SG_LINK_PACE_NS?  *ret_wait_ns: how long
 * until it does not, at the measured throughput (at least SG_LINK_PACE_MIN_WAIT_NS).  False
 * (no pacing) while the throughput is unknown, or m is NULL. */
bool sg_link_meter_paced(const struct sg_link_meter *m, uint64_t *ret_wait_ns);

/* The epoch of the workload reading at now_ns: the first new chunk of the current burst of
 * reads (one with no gap of quiet_ns), or now_ns if none is going on. */
uint64_t sg_link_meter_burst_epoch(const struct sg_link_meter *m, uint64_t now_ns,
				   uint64_t quiet_ns);
/* A layer's recorder noted a chunk read for the first time at now_ns. */
void sg_link_meter_burst_note(struct sg_link_meter *m, uint64_t now_ns, uint64_t quiet_ns);

/* The smoothed RTT (the default before any sample). */
uint64_t sg_link_meter_rtt_ns(const struct sg_link_meter *m);
/* The throughput estimate, bytes per second; 0 when unknown. */
double sg_link_meter_bytes_per_s(const struct sg_link_meter *m);
/* Bytes the link carries in SG_LINK_INFLIGHT_NS, within [SG_LINK_MIN_CAP, SG_LINK_MAX_CAP];
 * SG_LINK_DEFAULT_CAP when unknown or m is NULL. */
size_t sg_link_meter_inflight_cap(const struct sg_link_meter *m);
/* Is streaming `bytes` cheaper than chasing misses: does it take at most SG_LINK_FAST_RTTS
 * of the lowest round trips seen (the smoothed one before any)?  False when the throughput
 * is unknown or m is NULL. */
bool sg_link_meter_fast(const struct sg_link_meter *m, uint64_t bytes);

#endif
