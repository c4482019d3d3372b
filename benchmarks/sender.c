/*
 * Paced UDP sender of export datagrams for the egress benchmark suite.
 *
 * Reads a stream file written by benchmarks/stream.py (all datagrams of a capture, with
 * their exporter, protocol and record counts), then sends them with sendmmsg(2) to
 * HOST:PORT (127.0.0.1 or ::1 only) at a given datagram rate, paced in bursts every
 * ~100 us, for a duration or a number of datagrams, looping over the file if needed.
 *
 * Each exporter of the file gets its own socket bound to its own loopback address
 * (127.0.0.N), so receivers keep per-exporter state apart. Sequence numbers are rewritten
 * so they stay consecutive across loops: NetFlow v5 flow_sequence += records of the
 * datagram; NetFlow v9 package sequence += 1; IPFIX sequence += data records of the
 * message. Each (exporter, protocol, domain) stream starts at the sequence number of its
 * first datagram in the file, so the first pass sends the file's bytes unchanged.
 *
 * Prints one JSON object: what was sent (datagrams, records, bytes, per exporter), the
 * loops over the file and the position reached, the elapsed time and send errors.
 *
 * Build: gcc -O2 -o sender sender.c
 * Usage: sender FILE PORT [--host 127.0.0.1|::1] [--rate DG_PER_S] [--seconds S]
 *               [--count N] [--batch B]
 *   --rate 0 (default) sends as fast as possible; --count stops after N datagrams.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define MAGIC "EGSTRM01"
#define TICK_NS 100000LL /* one burst every 100 us */
#define MAX_BATCH 1024

struct entry {          /* on disk, little-endian, followed by len payload bytes */
    uint32_t len;
    uint32_t records;   /* records counted by the sequence number (IPFIX: data records) */
    uint32_t flows;     /* flow records (what a receiver should count) */
    uint16_t exporter;  /* index into the exporter table */
    uint16_t stream;    /* index of the (exporter, version, domain) sequence stream */
    uint8_t kind;       /* 5, 9 or 10 */
    uint8_t pad[3];
};

struct datagram {
    unsigned char *data;
    uint32_t len, records, flows;
    uint16_t exporter, stream;
    uint8_t kind;
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(int64_t t) {
    struct timespec ts = {t / 1000000000LL, t % 1000000000LL};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static uint32_t get32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

static size_t seq_offset(uint8_t kind) {
    return kind == 5 ? 16 : kind == 9 ? 12 : 8;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s FILE PORT [--host H] [--rate R] [--seconds S] [--count N] [--batch B]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int port = atoi(argv[2]);
    const char *host = "127.0.0.1";
    double rate = 0, seconds = 0;
    long long count = -1;
    int batch_max = 64;
    for (int i = 3; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--host")) host = argv[i + 1];
        else if (!strcmp(argv[i], "--rate")) rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--count")) count = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch")) batch_max = atoi(argv[i + 1]);
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (batch_max < 1 || batch_max > MAX_BATCH) batch_max = 64;
    if (seconds <= 0 && count < 0) { fprintf(stderr, "give --seconds or --count\n"); return 2; }

    /* The destination must be loopback: this tool never sends anywhere else. */
    struct sockaddr_storage dst;
    socklen_t dst_len;
    int v6 = strchr(host, ':') != NULL;
    memset(&dst, 0, sizeof dst);
    if (v6) {
        struct sockaddr_in6 *d = (struct sockaddr_in6 *)&dst;
        d->sin6_family = AF_INET6;
        d->sin6_port = htons(port);
        if (inet_pton(AF_INET6, host, &d->sin6_addr) != 1 || !IN6_IS_ADDR_LOOPBACK(&d->sin6_addr)) {
            fprintf(stderr, "destination must be ::1\n");
            return 2;
        }
        dst_len = sizeof *d;
    } else {
        struct sockaddr_in *d = (struct sockaddr_in *)&dst;
        d->sin_family = AF_INET;
        d->sin_port = htons(port);
        if (inet_pton(AF_INET, host, &d->sin_addr) != 1 || (ntohl(d->sin_addr.s_addr) >> 24) != 127) {
            fprintf(stderr, "destination must be in 127.0.0.0/8\n");
            return 2;
        }
        dst_len = sizeof *d;
    }

    /* Load the stream file. */
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    char magic[8];
    uint32_t head[3];
    if (fread(magic, 1, 8, f) != 8 || memcmp(magic, MAGIC, 8) || fread(head, 4, 3, f) != 3) {
        fprintf(stderr, "%s: not a stream file\n", path);
        return 2;
    }
    uint32_t n = head[0], n_exporters = head[1], n_streams = head[2];
    if (n == 0 || n_exporters == 0 || n_exporters > 250 || n_streams == 0) {
        fprintf(stderr, "%s: empty or bad stream file\n", path);
        return 2;
    }
    uint32_t *exporter_addr = calloc(n_exporters, 4); /* IPv4, host order, in 127/8 */
    if (fread(exporter_addr, 4, n_exporters, f) != n_exporters) die("read exporters");
    struct datagram *dg = calloc(n, sizeof *dg);
    for (uint32_t i = 0; i < n; i++) {
        struct entry e;
        if (fread(&e, sizeof e, 1, f) != 1) die("read entry");
        if (e.exporter >= n_exporters || e.stream >= n_streams || e.len > 65507 || e.len < 20) {
            fprintf(stderr, "%s: bad entry %u\n", path, i);
            return 2;
        }
        dg[i].data = malloc(e.len);
        if (fread(dg[i].data, 1, e.len, f) != e.len) die("read payload");
        dg[i].len = e.len;
        dg[i].records = e.records;
        dg[i].flows = e.flows;
        dg[i].exporter = e.exporter;
        dg[i].stream = e.stream;
        dg[i].kind = e.kind;
    }
    fclose(f);

    /* Sequence state: each stream continues from its first datagram's number. */
    uint32_t *next_seq = calloc(n_streams, 4);
    char *seen = calloc(n_streams, 1);
    for (uint32_t i = 0; i < n; i++) {
        if (!seen[dg[i].stream]) {
            seen[dg[i].stream] = 1;
            next_seq[dg[i].stream] = get32(dg[i].data + seq_offset(dg[i].kind));
        }
    }

    /* One socket per exporter, bound to its loopback address (IPv4) or ::1. */
    int *sock = calloc(n_exporters, sizeof(int));
    for (uint32_t x = 0; x < n_exporters; x++) {
        sock[x] = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
        if (sock[x] < 0) die("socket");
        int sndbuf = 4 << 20;
        setsockopt(sock[x], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
        if (!v6) {
            struct sockaddr_in src = {0};
            src.sin_family = AF_INET;
            src.sin_addr.s_addr = htonl(exporter_addr[x]);
            if ((exporter_addr[x] >> 24) != 127) { fprintf(stderr, "exporter not in 127/8\n"); return 2; }
            if (bind(sock[x], (struct sockaddr *)&src, sizeof src) < 0) die("bind");
        }
    }

    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    struct mmsghdr msgs[MAX_BATCH];
    struct iovec iov[MAX_BATCH];
    memset(msgs, 0, sizeof msgs);
    long long *per_exporter = calloc(n_exporters, sizeof(long long));
    long long sent = 0, records = 0, flows = 0, bytes = 0, errors = 0, loops = 0;
    long long limit = count >= 0 ? count : -1;
    if (rate > 0 && seconds > 0) {
        long long by_time = (long long)(rate * seconds + 0.5);
        limit = limit < 0 || by_time < limit ? by_time : limit;
    }
    uint32_t pos = 0;
    int last_errno = 0;
    int64_t t0 = now_ns(), deadline = seconds > 0 ? t0 + (int64_t)(seconds * 1e9) : INT64_MAX;
    /* With a limit, a paced run may need a moment past its nominal end to send it all. */
    int64_t hard_deadline = deadline == INT64_MAX ? INT64_MAX
                            : deadline + (limit >= 0 ? 2000000000LL : 0);
    int64_t tick = 0;
    for (;;) {
        if (limit >= 0 && sent >= limit) break;
        int64_t t = now_ns();
        if (t >= hard_deadline || errors > 100000) break;
        long long due;
        if (rate > 0) {
            tick = (t - t0) / TICK_NS + 1;
            due = (long long)(rate * (double)(tick * TICK_NS) / 1e9);
            if (limit >= 0 && due > limit) due = limit;
        } else {
            due = sent + batch_max;
            if (limit >= 0 && due > limit) due = limit;
        }
        while (sent < due) {
            /* A batch: consecutive datagrams of one exporter, at most batch_max, never
             * wrapping (so one datagram buffer is never twice in a batch). */
            long long want = due - sent;
            if (want > batch_max) want = batch_max;
            if (want > (long long)(n - pos)) want = n - pos;
            uint16_t x = dg[pos].exporter;
            int k = 0;
            while (k < want && dg[pos + k].exporter == x) {
                struct datagram *d = &dg[pos + k];
                uint32_t *s = &next_seq[d->stream];
                put32(d->data + seq_offset(d->kind), *s);
                *s += d->kind == 9 ? 1 : d->records;
                iov[k].iov_base = d->data;
                iov[k].iov_len = d->len;
                msgs[k].msg_hdr.msg_iov = &iov[k];
                msgs[k].msg_hdr.msg_iovlen = 1;
                msgs[k].msg_hdr.msg_name = &dst;
                msgs[k].msg_hdr.msg_namelen = dst_len;
                k++;
            }
            int done = 0;
            while (done < k) {
                int r = sendmmsg(sock[x], msgs + done, k - done, 0);
                if (r < 0) {
                    if (errno == EINTR) continue;
                    /* A datagram the kernel refused is not sent: count it and skip it,
                     * keeping its sequence number used (the receiver will see a gap). */
                    last_errno = errno;
                    errors++;
                    done++;
                    continue;
                }
                for (int j = done; j < done + r; j++) {
                    struct datagram *d = &dg[pos + j];
                    sent++;
                    records += d->records;
                    flows += d->flows;
                    bytes += d->len;
                    per_exporter[x]++;
                }
                done += r;
            }
            pos += k;
            if (pos == n) {
                pos = 0;
                loops++;
            }
            if (errors > 100000) break; /* nothing goes out */
        }
        if (rate > 0) sleep_until(t0 + tick * TICK_NS);
    }
    int64_t t1 = now_ns();
    double elapsed = (t1 - t0) / 1e9;
    printf("{\"datagrams\": %lld, \"records\": %lld, \"flows\": %lld, \"bytes\": %lld, "
           "\"seconds\": %.6f, \"rate\": %.1f, \"offered_rate\": %.1f, \"loops\": %lld, "
           "\"position\": %u, \"file_datagrams\": %u, \"errors\": %lld, \"last_errno\": %d, "
           "\"per_exporter\": [",
           sent, records, flows, bytes, elapsed, elapsed > 0 ? sent / elapsed : 0.0, rate, loops,
           pos, n, errors, last_errno);
    for (uint32_t x = 0; x < n_exporters; x++) {
        struct in_addr a = {htonl(exporter_addr[x])};
        printf("%s{\"address\": \"%s\", \"datagrams\": %lld}", x ? ", " : "", inet_ntoa(a),
               per_exporter[x]);
    }
    printf("]}\n");
    return 0;
}
