/* The link meter (daemon/core/link_meter.c) on synthetic samples. */
#include "daemon/core/link_meter.h"
#include "tests/unit/test.h"

#define MS (1000000ull)

/* One body of `bytes` delivered at `rate` bytes/s from t, in 64 KiB slices; returns the end. */
static uint64_t stream_body(struct sg_link_meter *m, uint64_t t, uint64_t bytes, double rate)
{
	const uint64_t slice = 64 << 10;

	sg_link_meter_begin(m, t, t);
	for (uint64_t sent = 0; sent < bytes; sent += slice) {
		t += (uint64_t)((double)slice * 1e9 / rate);
		sg_link_meter_bytes(m, slice, t);
	}
	sg_link_meter_end(m, t);
	return t;
}

TEST(defaults_before_any_sample)
{
	struct sg_link_meter m;

	sg_link_meter_init(&m);
	CHECK_EQ(sg_link_meter_rtt_ns(&m), SG_LINK_DEFAULT_RTT_NS);
	CHECK(sg_link_meter_bytes_per_s(&m) == 0);
	CHECK_EQ(sg_link_meter_inflight_cap(&m), SG_LINK_DEFAULT_CAP);
	CHECK(!sg_link_meter_fast(&m, 1));
	CHECK_EQ(sg_link_meter_inflight_cap(NULL), SG_LINK_DEFAULT_CAP);
	CHECK(!sg_link_meter_fast(NULL, 1));
}

TEST(rtt_is_smoothed)
{
	struct sg_link_meter m;

	sg_link_meter_init(&m);
	sg_link_meter_first_byte(&m, 1000 * MS, 1040 * MS);
	CHECK_EQ(sg_link_meter_rtt_ns(&m), 40 * MS);
	/* One outlier moves it by an eighth of the difference, not to the outlier. */
	sg_link_meter_first_byte(&m, 2000 * MS, 2120 * MS);
	CHECK_EQ(sg_link_meter_rtt_ns(&m), 50 * MS);
	for (int i = 0; i < 64; i++)
		sg_link_meter_first_byte(&m, 3000 * MS, 3040 * MS);
	CHECK(sg_link_meter_rtt_ns(&m) >= 40 * MS && sg_link_meter_rtt_ns(&m) < 41 * MS);
	/* A clock that went backwards is no sample. */
	sg_link_meter_first_byte(&m, 5000 * MS, 4000 * MS);
	CHECK(sg_link_meter_rtt_ns(&m) < 41 * MS);
}

TEST(throughput_and_cap_of_a_100_mbit_link)
{
	struct sg_link_meter m;
	uint64_t t = 0;

	sg_link_meter_init(&m);
	for (int i = 0; i < 10; i++)
		t = stream_body(&m, t + 40 * MS, 4 << 20, 12.5e6);
	double bw = sg_link_meter_bytes_per_s(&m);
	CHECK(bw > 12.0e6 && bw < 13.0e6);
	/* 150 ms of 12.5 MB/s */
	size_t cap = sg_link_meter_inflight_cap(&m);
	CHECK(cap > 1800000 && cap < 1950000);
}

TEST(concurrent_bodies_share_one_window)
{
	struct sg_link_meter m;
	uint64_t t = 0;

	sg_link_meter_init(&m);
	/* Four bodies interleaved, each getting a quarter of a 10 MB/s link: the link's rate is
	 * 10 MB/s, not 2.5. */
	for (int k = 0; k < 4; k++)
		sg_link_meter_begin(&m, t, t);
	for (int s = 0; s < 200; s++) {
		t += (uint64_t)(65536.0 * 1e9 / 10e6);
		sg_link_meter_bytes(&m, 65536, t);
	}
	for (int k = 0; k < 4; k++)
		sg_link_meter_end(&m, t);
	double bw = sg_link_meter_bytes_per_s(&m);
	CHECK(bw > 9.5e6 && bw < 10.5e6);
	CHECK_EQ(m.active, 0u);
	/* An unpaired end is ignored. */
	sg_link_meter_end(&m, t);
	CHECK_EQ(m.active, 0u);
}

TEST(small_windows_are_no_sample_and_idle_time_is_not_counted)
{
	struct sg_link_meter m;
	uint64_t t = 0;

	sg_link_meter_init(&m);
	sg_link_meter_begin(&m, t, t);
	sg_link_meter_bytes(&m, 4096, t + 1 * MS);
	sg_link_meter_end(&m, t + 1 * MS);
	CHECK_EQ(m.bw_samples, 0u);
	/* Bodies separated by long idle gaps: the gaps do not lower the rate. */
	for (int i = 0; i < 5; i++) {
		t += 5000 * MS;
		t = stream_body(&m, t, 1 << 20, 20e6);
	}
	double bw = sg_link_meter_bytes_per_s(&m);
	CHECK(bw > 19e6 && bw < 21e6);
}

TEST(rises_fast_falls_slowly)
{
	struct sg_link_meter m;
	uint64_t t = 0;

	sg_link_meter_init(&m);
	t = stream_body(&m, t, 1 << 20, 1e6);
	CHECK(sg_link_meter_bytes_per_s(&m) < 1.1e6);
	t = stream_body(&m, t, 8 << 20, 100e6);
	CHECK(sg_link_meter_bytes_per_s(&m) > 45e6);   /* halfway up at once */
	t = stream_body(&m, t, 8 << 20, 100e6);
	t = stream_body(&m, t, 8 << 20, 100e6);
	double high = sg_link_meter_bytes_per_s(&m);
	CHECK(high > 80e6);
	/* An app-limited window (a small reply trickling) lowers it by an eighth of the gap. */
	t = stream_body(&m, t, 256 << 10, 2e6);
	double after = sg_link_meter_bytes_per_s(&m);
	CHECK(after < high && after > high * 0.8);
}

TEST(long_transfers_sample_periodically)
{
	struct sg_link_meter m;

	sg_link_meter_init(&m);
	sg_link_meter_begin(&m, 0, 0);
	uint64_t t = 0;
	for (int s = 0; s < 100; s++) {
		t += 10 * MS;
		sg_link_meter_bytes(&m, 100000, t);
	}
	/* 1 s of a 10 MB/s body, still streaming: sampled every 100 ms. */
	CHECK(m.bw_samples >= 9);
	double bw = sg_link_meter_bytes_per_s(&m);
	CHECK(bw > 9.5e6 && bw < 10.5e6);
	sg_link_meter_end(&m, t);
}

/* The loop was busy while a 600 KiB body arrived at 10 MB/s: its head and all its bytes are
 * read in 1 ms.  The window starts when its first byte could have arrived (sent + the lowest
 * time to first byte), not when the head was read, so the sample stays near the link's rate
 * instead of hundreds of MB/s. */
TEST(a_body_read_late_from_the_socket_is_not_a_fast_link)
{
	struct sg_link_meter m;
	uint64_t t = 0;

	sg_link_meter_init(&m);
	sg_link_meter_first_byte(&m, t, t + 40 * MS);   /* the link's round trip */
	t = stream_body(&m, t + 40 * MS, 1 << 20, 10e6);
	double before = sg_link_meter_bytes_per_s(&m);
	CHECK(before > 9.5e6 && before < 10.5e6);
	/* Sent at t, first byte on the wire at t + 40 ms, last at t + 40 + 60 ms; the loop reads
	 * it all at t + 100 ms. */
	uint64_t sent = t + 1000 * MS, seen = sent + 100 * MS;
	sg_link_meter_first_byte(&m, sent, seen);
	sg_link_meter_begin(&m, sent, seen);
	for (int i = 0; i < 10; i++)
		sg_link_meter_bytes(&m, 61440, seen + 1 * MS);
	sg_link_meter_end(&m, seen + 1 * MS);
	double after = sg_link_meter_bytes_per_s(&m);
	CHECK(after < 11e6);
	/* Before any time to first byte (the TOC tails, the first requests to a host, do not
	 * give one), the send bounds the window: 600 kB read 100 ms after the send is at most
	 * 6 MB/s, an underestimate the next samples correct, not 600 MB/s. */
	struct sg_link_meter fresh;
	sg_link_meter_init(&fresh);
	sg_link_meter_begin(&fresh, sent, seen);
	sg_link_meter_bytes(&fresh, 614400, seen + 1 * MS);
	sg_link_meter_end(&fresh, seen + 1 * MS);
	CHECK(sg_link_meter_bytes_per_s(&fresh) > 5e6 && sg_link_meter_bytes_per_s(&fresh) < 6.5e6);
	/* A request without a send time (none known) keeps the head's time. */
	struct sg_link_meter unsent;
	sg_link_meter_init(&unsent);
	sg_link_meter_begin(&unsent, 0, seen);
	sg_link_meter_bytes(&unsent, 614400, seen + 10 * MS);
	sg_link_meter_end(&unsent, seen + 10 * MS);
	CHECK(sg_link_meter_bytes_per_s(&unsent) > 60e6);
}

TEST(cap_is_clamped)
{
	struct sg_link_meter m;

	sg_link_meter_init(&m);
	stream_body(&m, 0, 1 << 20, 100e3);
	CHECK_EQ(sg_link_meter_inflight_cap(&m), SG_LINK_MIN_CAP);
	sg_link_meter_init(&m);
	stream_body(&m, 0, 1 << 30, 10e9);
	CHECK_EQ(sg_link_meter_inflight_cap(&m), SG_LINK_MAX_CAP);
}

TEST(fast_is_relative_to_the_round_trip)
{
	struct sg_link_meter m;

	sg_link_meter_init(&m);
	sg_link_meter_first_byte(&m, 0, 40 * MS);
	stream_body(&m, 0, 4 << 20, 12.5e6);
	/* 48 round trips of 40 ms = 1.92 s = 24 MB at 12.5 MB/s */
	CHECK(sg_link_meter_fast(&m, 20000000));
	CHECK(!sg_link_meter_fast(&m, 30000000));
	/* Times to first byte that grew behind queued bytes (the smoothed RTT at 400 ms) do
	 * not make it fast: the lowest one is the link's. */
	for (int i = 0; i < 64; i++)
		sg_link_meter_first_byte(&m, 0, 400 * MS);
	CHECK(sg_link_meter_rtt_ns(&m) > 350 * MS);
	CHECK(!sg_link_meter_fast(&m, 30000000));
	/* The same layer over a link whose round trip is 400 ms is worth streaming. */
	struct sg_link_meter far;
	sg_link_meter_init(&far);
	sg_link_meter_first_byte(&far, 0, 400 * MS);
	stream_body(&far, 0, 4 << 20, 12.5e6);
	CHECK(sg_link_meter_fast(&far, 40000000));
}

/* Two layers on one link: one's on-demand request (or its reader served from what was
 * fetched ahead) makes the other's fetching ahead wait, during it and for the gap after it;
 * bytes fetched ahead add up across layers. */
TEST(ondemand_and_ahead_are_counted_across_layers)
{
	struct sg_link_meter m;
	uint64_t wait;

	sg_link_meter_init(&m);
	CHECK(!sg_link_meter_ondemand_busy(&m, 100 * MS, 1000 * MS, &wait));
	CHECK(!sg_link_meter_ondemand_busy(NULL, 100 * MS, 1000 * MS, &wait));
	sg_link_meter_ondemand(&m, +1, 1000 * MS);   /* layer A's reader */
	sg_link_meter_ondemand(&m, +1, 1010 * MS);   /* layer B's */
	CHECK(sg_link_meter_ondemand_busy(&m, 100 * MS, 1020 * MS, &wait));
	CHECK_EQ(wait, 0);
	sg_link_meter_ondemand(&m, -1, 1040 * MS);
	CHECK(sg_link_meter_ondemand_busy(&m, 100 * MS, 1050 * MS, &wait));   /* B's still out */
	sg_link_meter_ondemand(&m, -1, 1060 * MS);
	CHECK(sg_link_meter_ondemand_busy(&m, 100 * MS, 1100 * MS, &wait));
	CHECK_EQ(wait, 60 * MS);
	CHECK(!sg_link_meter_ondemand_busy(&m, 100 * MS, 1160 * MS, &wait));
	sg_link_meter_ondemand(&m, -1, 1200 * MS);   /* an extra end changes nothing */
	CHECK_EQ(m.ondemand_inflight, 0);
	/* a reader served from bytes fetched ahead, in any layer: the same gap after it */
	sg_link_meter_reader(&m, 1300 * MS);
	CHECK_EQ(m.ondemand_inflight, 0);
	CHECK(sg_link_meter_ondemand_busy(&m, 100 * MS, 1350 * MS, &wait));
	CHECK_EQ(wait, 50 * MS);
	CHECK(!sg_link_meter_ondemand_busy(&m, 100 * MS, 1400 * MS, &wait));

	sg_link_meter_ahead(&m, +1, 600000);
	sg_link_meter_ahead(&m, +1, 400000);
	CHECK_EQ(m.ahead_inflight, 1000000);
	CHECK_EQ(m.ahead_requests, 2);
	sg_link_meter_ahead(&m, -1, 600000);
	CHECK_EQ(m.ahead_inflight, 400000);
	CHECK_EQ(m.ahead_requests, 1);
	sg_link_meter_ahead(&m, -1, 500000);         /* never below zero */
	CHECK_EQ(m.ahead_inflight, 0);
	CHECK_EQ(m.ahead_requests, 0);
	sg_link_meter_ahead(&m, -1, 1);
	CHECK_EQ(m.ahead_requests, 0);
}

/* Readers' own fetches are counted apart from a replay's hold (which counts as on-demand);
 * the link's bytes in a round trip follow the throughput and the lowest time to first byte. */
TEST(reads_and_bytes_in_a_round_trip)
{
	struct sg_link_meter m;

	sg_link_meter_init(&m);
	CHECK_EQ(sg_link_meter_bdp(&m), 0);          /* no throughput yet */
	CHECK_EQ(sg_link_meter_bdp(NULL), 0);
	sg_link_meter_reads(&m, +1);
	sg_link_meter_reads(&m, +1);
	CHECK_EQ(m.reads_inflight, 2u);
	CHECK_EQ(m.ondemand_inflight, 0u);           /* the caller counts that one itself */
	sg_link_meter_reads(&m, -1);
	sg_link_meter_reads(&m, -1);
	sg_link_meter_reads(&m, -1);                 /* an extra end changes nothing */
	CHECK_EQ(m.reads_inflight, 0u);

	uint64_t t = 0;
	for (int i = 0; i < 10; i++) {
		sg_link_meter_first_byte(&m, t, t + 40 * MS);
		t = stream_body(&m, t + 40 * MS, 4 << 20, 12.5e6);
	}
	/* 12.5 MB/s x 40 ms */
	uint64_t bdp = sg_link_meter_bdp(&m);
	CHECK(bdp > 480000 && bdp < 520000);
	/* A slower first byte (a queue) does not raise it: the lowest one counts. */
	sg_link_meter_first_byte(&m, t, t + 300 * MS);
	CHECK(sg_link_meter_bdp(&m) < 520000);
}

/* Fetching ahead in order: a request waits while the link owes more than it delivers in a
 * round trip plus SG_LINK_PACE_NS, for as long as draining the rest takes; never before the
 * throughput is known; repaying more than is owed does not wrap. */
TEST(fetching_ahead_waits_for_what_the_link_owes_to_drain)
{
	struct sg_link_meter m;
	uint64_t t = 0, wait = 1;

	sg_link_meter_init(&m);
	sg_link_meter_owe(&m, 64 << 20);
	CHECK(!sg_link_meter_paced(&m, &wait));   /* throughput unknown: no pacing */
	CHECK_EQ(wait, 0);
	CHECK(!sg_link_meter_paced(NULL, &wait));
	sg_link_meter_repay(&m, 64 << 20);
	CHECK_EQ(m.owed, 0);
	/* 100 Mbit/s, 40 ms at best: it delivers 875 kB in one and a half of the lowest round
	 * trips plus the pace time.  A round trip that grew on a busy link (the smoothed one)
	 * does not widen it. */
	sg_link_meter_first_byte(&m, 0, 40 * MS);
	for (int i = 0; i < 8; i++)
		sg_link_meter_first_byte(&m, 0, 300 * MS);
	CHECK(sg_link_meter_rtt_ns(&m) > 150 * MS);
	for (int i = 0; i < 4; i++)
		t = stream_body(&m, t + 40 * MS, 4 << 20, 12.5e6);
	double bw = sg_link_meter_bytes_per_s(&m);
	CHECK(bw > 12e6 && bw < 13e6);
	sg_link_meter_owe(&m, 850000);
	CHECK(!sg_link_meter_paced(&m, &wait));
	sg_link_meter_owe(&m, 1150000);   /* 2 MB: 160 ms to drain, 90 ms past the horizon */
	CHECK(sg_link_meter_paced(&m, &wait));
	CHECK(wait > 85 * MS && wait < 95 * MS);
	sg_link_meter_repay(&m, 1100000);   /* 900 kB: 72 ms, 2 ms past */
	CHECK(sg_link_meter_paced(&m, &wait));
	CHECK_EQ(wait, SG_LINK_PACE_MIN_WAIT_NS);
	sg_link_meter_repay(&m, 50000);
	CHECK(!sg_link_meter_paced(&m, &wait));
	sg_link_meter_repay(&m, 10 << 20);
	CHECK_EQ(m.owed, 0);
}

TEST_MAIN()
