/*
 * The C side of the nng benchmark: the same ping-pong and one-way runs as
 * the effect-ipc channel, written directly against libnng (the library the
 * transport loads), over the same pair1 protocol and ipc transport. No nng
 * headers are needed: the few prototypes are declared here, and the program
 * is linked against libnng.so.1. Built by bench/nng.ts with gcc at bench time.
 *
 *   nng-bench echo URL                  answer every message with itself
 *   nng-bench sink URL                  count messages; an empty one is answered with "messages bytes"
 *   nng-bench client ECHO_URL SINK_URL  dial both, then run the commands read from stdin, one per line:
 *     pingpong SIZE N WARM              N timed round trips (after WARM untimed), one per line, in ns
 *     oneway SIZE SECONDS               send for SECONDS (0 to 86400), then print "sent received bytes seconds"
 *   each answer ends with a line "done".
 *
 * The client is started once, before any measurement: a process started in
 * the middle of a run would fork the driver, whose every page is then copied
 * or write-faulted on its next write, which the next contender's round paid
 * for (bench/README.md, "RPC Echo at 1 MiB"). Every mode prints "ready" once
 * it listens or has dialled, and ends with the process that started it (on
 * Linux: PR_SET_PDEATHSIG), so that a driver killed in the middle of a run
 * leaves none behind; the client also ends when its stdin does.
 */
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

typedef struct { uint32_t id; } nng_socket;
typedef struct { uint32_t id; } nng_listener;
typedef struct { uint32_t id; } nng_dialer;

extern int nng_pair1_open(nng_socket *);
extern int nng_listen(nng_socket, const char *, nng_listener *, int);
extern int nng_dial(nng_socket, const char *, nng_dialer *, int);
extern int nng_send(nng_socket, void *, size_t, int);
extern int nng_recv(nng_socket, void *, size_t *, int);
extern void nng_free(void *, size_t);
extern int nng_socket_set_size(nng_socket, const char *, size_t);
extern int nng_socket_set_int(nng_socket, const char *, int);
extern const char *nng_strerror(int);

#define NNG_FLAG_ALLOC 1

static void check(int rv, const char *what) {
	if (rv != 0) {
		fprintf(stderr, "nng-bench: %s: %s\n", what, nng_strerror(rv));
		exit(1);
	}
}

static uint64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

static nng_socket open_socket(void) {
	nng_socket s;
	check(nng_pair1_open(&s), "open");
	check(nng_socket_set_size(s, "recv-size-max", 0), "recv-size-max");
	return s;
}

static void end_with_parent(void) {
#ifdef __linux__
	prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
}

static nng_socket serve(const char *url) {
	end_with_parent();
	nng_socket s = open_socket();
	check(nng_listen(s, url, NULL, 0), "listen");
	printf("ready\n");
	fflush(stdout);
	return s;
}

static nng_socket connect_to(const char *url) {
	nng_socket s = open_socket();
	check(nng_dial(s, url, NULL, 0), "dial");
	return s;
}

/* `count` zeroed items of `size` bytes (at least one), or the end of the program. */
static void *zeroed(size_t count, size_t size) {
	void *memory = calloc(count > 0 ? count : 1, size);
	if (memory == NULL) {
		fprintf(stderr, "nng-bench: out of memory\n");
		exit(1);
	}
	return memory;
}

/* N timed round trips on `s` after WARM untimed ones; prints each, in ns, one per line. */
static void pingpong(nng_socket s, size_t size, long n, long warmup) {
	char *payload = zeroed(size, 1);
	uint64_t *samples = zeroed((size_t) n, sizeof(uint64_t));
	for (long i = -warmup; i < n; i++) {
		uint64_t t0 = now_ns();
		check(nng_send(s, payload, size, 0), "send");
		void *buf;
		size_t len;
		check(nng_recv(s, &buf, &len, NNG_FLAG_ALLOC), "recv");
		uint64_t t1 = now_ns();
		nng_free(buf, len);
		if (i >= 0) samples[i] = t1 - t0;
	}
	for (long i = 0; i < n; i++) printf("%llu\n", (unsigned long long) samples[i]);
	free(samples);
	free(payload);
}

/* Sends to the sink on `s` for SECONDS, then asks it what arrived; prints "sent received bytes seconds". */
static void oneway(nng_socket s, size_t size, double seconds) {
	char *payload = zeroed(size, 1);
	uint64_t start = now_ns(), deadline = start + (uint64_t) (seconds * 1e9), sent = 0;
	while (sent % 64 != 0 || now_ns() < deadline) {
		check(nng_send(s, payload, size, 0), "send");
		sent++;
	}
	check(nng_send(s, payload, 0, 0), "send");
	char *reply;
	size_t len;
	check(nng_recv(s, &reply, &len, NNG_FLAG_ALLOC), "recv");
	double elapsed = (double) (now_ns() - start) / 1e9;
	unsigned long long received = 0, bytes = 0;
	char text[64] = { 0 };
	memcpy(text, reply, len < 63 ? len : 63);
	nng_free(reply, len);
	sscanf(text, "%llu %llu", &received, &bytes);
	printf("%llu %llu %llu %.6f\n", (unsigned long long) sent, received, bytes, elapsed);
	free(payload);
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: nng-bench echo|sink|client URL ...\n");
		return 2;
	}
	const char *mode = argv[1];
	const char *url = argv[2];
	if (strcmp(mode, "echo") == 0) {
		nng_socket s = serve(url);
		for (;;) {
			void *buf;
			size_t len;
			check(nng_recv(s, &buf, &len, NNG_FLAG_ALLOC), "recv");
			check(nng_send(s, buf, len, NNG_FLAG_ALLOC), "send"); /* nng frees buf */
		}
	}
	if (strcmp(mode, "sink") == 0) {
		nng_socket s = serve(url);
		uint64_t messages = 0, bytes = 0;
		for (;;) {
			void *buf;
			size_t len;
			check(nng_recv(s, &buf, &len, NNG_FLAG_ALLOC), "recv");
			nng_free(buf, len);
			if (len == 0) {
				char reply[64];
				int n = snprintf(reply, sizeof reply, "%llu %llu", (unsigned long long) messages,
				    (unsigned long long) bytes);
				check(nng_send(s, reply, (size_t) n, 0), "send");
				messages = 0;
				bytes = 0;
			} else {
				messages++;
				bytes += len;
			}
		}
	}
	if (strcmp(mode, "client") == 0 && argc == 4) {
		end_with_parent();
		nng_socket echo = connect_to(url), sink = connect_to(argv[3]);
		printf("ready\n");
		fflush(stdout);
		char line[128];
		while (fgets(line, sizeof line, stdin) != NULL) {
			unsigned long long size;
			long n, warmup;
			double seconds;
			if (sscanf(line, "pingpong %llu %ld %ld", &size, &n, &warmup) == 3 && n >= 0 && warmup >= 0) {
				pingpong(echo, (size_t) size, n, warmup);
			} else if (sscanf(line, "oneway %llu %lf", &size, &seconds) == 2 && isfinite(seconds) && seconds >= 0 &&
			           seconds <= 86400) {
				oneway(sink, (size_t) size, seconds);
			} else {
				fprintf(stderr, "nng-bench: bad command: %s", line);
				return 2;
			}
			printf("done\n");
			fflush(stdout);
		}
		return 0;
	}
	fprintf(stderr, "nng-bench: bad arguments\n");
	return 2;
}
