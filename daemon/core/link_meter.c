/* A link meter.  See link_meter.h. */
#include "daemon/core/link_meter.h"

#include <string.h>

void sg_link_meter_init(struct sg_link_meter *m)
{
	memset(m, 0, sizeof(*m));
	sg_list_init(&m->replayers);
	sg_list_init(&m->room_waiters);
}

static bool burst_on(const struct sg_link_meter *m, uint64_t now_ns, uint64_t quiet_ns)
{
	return m->burst_last_ns && now_ns >= m->burst_last_ns &&
	       now_ns - m->burst_last_ns < quiet_ns;
}

uint64_t sg_link_meter_burst_epoch(const struct sg_link_meter *m, uint64_t now_ns,
				   uint64_t quiet_ns)
{
	return burst_on(m, now_ns, quiet_ns) ? m->burst_start_ns : now_ns;
}

void sg_link_meter_burst_note(struct sg_link_meter *m, uint64_t now_ns, uint64_t quiet_ns)
{
	if (!burst_on(m, now_ns, quiet_ns))
		m->burst_start_ns = now_ns;
	if (now_ns > m->burst_last_ns)
		m->burst_last_ns = now_ns;
}

void sg_link_meter_first_byte(struct sg_link_meter *m, uint64_t sent_ns, uint64_t now_ns)
{
	if (now_ns < sent_ns)
		return;
	uint64_t s = now_ns - sent_ns;
	if (m->rtt_min_ns == 0 || (s > 0 && s < m->rtt_min_ns))
		m->rtt_min_ns = s;
	if (m->rtt_samples++ == 0)
		m->rtt_ns = s;
	else
		m->rtt_ns = m->rtt_ns - m->rtt_ns / 8 + s / 8;
}

/* Closes the window at now_ns: a sample if it says enough. */
static void window_sample(struct sg_link_meter *m, uint64_t now_ns)
{
	uint64_t span = now_ns > m->win_start_ns ? now_ns - m->win_start_ns : 0;

	if (m->win_bytes >= SG_LINK_SAMPLE_MIN_BYTES && span > 0) {
		double s = (double)m->win_bytes * 1e9 / (double)span;
		if (m->bw_samples++ == 0)
			m->bytes_per_s = s;
		else if (s > m->bytes_per_s)
			m->bytes_per_s += (s - m->bytes_per_s) / 2;
		else
			m->bytes_per_s -= (m->bytes_per_s - s) / 8;
	}
	m->win_start_ns = now_ns;
	m->win_bytes = 0;
}

void sg_link_meter_begin(struct sg_link_meter *m, uint64_t sent_ns, uint64_t now_ns)
{
	if (m->active++ == 0) {
		/* Before any time to first byte, the send itself bounds it: a window that began
		 * at the head's processing credited a TOC tail read from the socket buffer all at
		 * once (184 kB in 0.3 ms) with 616 MB/s on a 12.5 MB/s link, and the estimate
		 * stood above 45 MB/s for a second: background fetch sent 3.5 MB requests and a
		 * read that joined one waited 1 s.  Counting the round trip in underestimates
		 * the first sample; the next ones raise it fast. */
		uint64_t earliest = sent_ns + m->rtt_min_ns;
		m->win_start_ns = sent_ns && earliest < now_ns ? earliest : now_ns;
		m->win_bytes = 0;
	}
}

void sg_link_meter_bytes(struct sg_link_meter *m, size_t n, uint64_t now_ns)
{
	if (m->active == 0)
		return;
	m->win_bytes += n;
	if (now_ns - m->win_start_ns >= SG_LINK_SAMPLE_NS &&
	    m->win_bytes >= SG_LINK_SAMPLE_MIN_BYTES)
		window_sample(m, now_ns);
}

void sg_link_meter_end(struct sg_link_meter *m, uint64_t now_ns)
{
	if (m->active == 0)
		return;
	if (--m->active == 0)
		window_sample(m, now_ns);
}

uint64_t sg_link_meter_rtt_ns(const struct sg_link_meter *m)
{
	return m && m->rtt_samples ? m->rtt_ns : SG_LINK_DEFAULT_RTT_NS;
}

double sg_link_meter_bytes_per_s(const struct sg_link_meter *m)
{
	return m ? m->bytes_per_s : 0;
}

size_t sg_link_meter_inflight_cap(const struct sg_link_meter *m)
{
	if (!m || m->bw_samples == 0)
		return SG_LINK_DEFAULT_CAP;
	double cap = m->bytes_per_s * ((double)SG_LINK_INFLIGHT_NS / 1e9);
	if (cap < (double)SG_LINK_MIN_CAP)
		return SG_LINK_MIN_CAP;
	if (cap > (double)SG_LINK_MAX_CAP)
		return SG_LINK_MAX_CAP;
	return (size_t)cap;
}

/* The lowest time to first byte seen (the smoothed one before any): the link's own round
 * trip, which does not grow with the bytes queued on it. */
static uint64_t lowest_rtt_ns(const struct sg_link_meter *m)
{
	return m->rtt_min_ns ? m->rtt_min_ns : sg_link_meter_rtt_ns(m);
}

bool sg_link_meter_fast(const struct sg_link_meter *m, uint64_t bytes)
{
	if (!m || m->bw_samples == 0 || m->bytes_per_s <= 0)
		return false;
	double stream_ns = (double)bytes * 1e9 / m->bytes_per_s;
	return stream_ns <= (double)SG_LINK_FAST_RTTS * (double)lowest_rtt_ns(m);
}

void sg_link_meter_ondemand(struct sg_link_meter *m, int delta, uint64_t now_ns)
{
	if (delta < 0 && m->ondemand_inflight == 0)
		return;
	m->ondemand_inflight = (unsigned)((int)m->ondemand_inflight + delta);
	m->last_ondemand_ns = now_ns;
}

void sg_link_meter_reads(struct sg_link_meter *m, int delta)
{
	if (delta < 0 && m->reads_inflight == 0)
		return;
	m->reads_inflight = (unsigned)((int)m->reads_inflight + delta);
}

uint64_t sg_link_meter_bdp(const struct sg_link_meter *m)
{
	if (!m || m->bw_samples == 0 || m->bytes_per_s <= 0)
		return 0;
	return (uint64_t)(m->bytes_per_s * (double)lowest_rtt_ns(m) / 1e9);
}

void sg_link_meter_reader(struct sg_link_meter *m, uint64_t now_ns)
{
	m->last_ondemand_ns = now_ns;
}

void sg_link_meter_ahead(struct sg_link_meter *m, int delta, size_t bytes)
{
	if (delta > 0) {
		m->ahead_inflight += bytes;
		m->ahead_requests++;
		return;
	}
	m->ahead_inflight = bytes > m->ahead_inflight ? 0 : m->ahead_inflight - bytes;
	if (m->ahead_requests)
		m->ahead_requests--;
}

bool sg_link_meter_ondemand_busy(const struct sg_link_meter *m, uint64_t gap_ns, uint64_t now_ns,
				 uint64_t *ret_wait_ns)
{
	*ret_wait_ns = 0;
	if (!m)
		return false;
	if (m->ondemand_inflight > 0)
		return true;
	if (m->last_ondemand_ns && now_ns - m->last_ondemand_ns < gap_ns) {
		*ret_wait_ns = gap_ns - (now_ns - m->last_ondemand_ns);
		return true;
	}
	return false;
}

void sg_link_meter_owe(struct sg_link_meter *m, uint64_t n)
{
	m->owed += n;
}

void sg_link_meter_repay(struct sg_link_meter *m, uint64_t n)
{
	m->owed = n > m->owed ? 0 : m->owed - n;
}

bool sg_link_meter_paced(const struct sg_link_meter *m, uint64_t *ret_wait_ns)
{
	*ret_wait_ns = 0;
	if (!m || m->bw_samples == 0 || m->bytes_per_s <= 0)
		return false;
	uint64_t rtt = lowest_rtt_ns(m);
	double horizon_ns = (double)(rtt + rtt / 2 + SG_LINK_PACE_NS);
	double drain_ns = (double)m->owed * 1e9 / m->bytes_per_s;
	if (drain_ns <= horizon_ns)
		return false;
	uint64_t wait = (uint64_t)(drain_ns - horizon_ns);
	*ret_wait_ns = wait < SG_LINK_PACE_MIN_WAIT_NS ? SG_LINK_PACE_MIN_WAIT_NS : wait;
	return true;
}
