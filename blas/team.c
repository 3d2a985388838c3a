//go:build cgo && !purego

/*
 * The crew: the backend's own worker threads, which run the items of one
 * phase of a call (the chunks of its products, or its attention tasks)
 * beside the calling thread, inside one cgo crossing (blas.Crew).
 *
 * Why C threads and not Go helpers: a phase of a small call lasts tens of
 * microseconds. Go helpers that poll between phases yield to the scheduler,
 * which wakes idle Ms (threads) to look for work; Linux places a woken
 * thread beside its waker, where it preempts a worker while the other core
 * idles, and a thread that has just run is not moved for half a
 * millisecond. Measured on a 2-core Xeon, a 32 MFLOP forward (xbench's tiny)
 * at 2 threads took 0.15 ms in one process and 0.3–0.6 ms (slower than 1
 * thread) in the next. A crew thread polls in C between phases and sleeps
 * on a condition variable when idle: the Go scheduler never sees it.
 *
 * The protocol is the Go pool's (xattn/pool.go): a phase is a team (one per
 * call in flight, recycled, never freed) whose generation, closed flag and
 * count of helpers inside share one atomic word; the caller offers up to
 * threads−1 tickets to the crew and runs items itself from a shared
 * counter; a helper joins only while the phase is open, so the caller never
 * waits for a thread that has not started, and waits only for the helpers
 * inside to finish their items. Many calls at once share the crew's
 * threads, which never outnumber the most helpers one phase asked for.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

#define CLOSED ((uint64_t)1 << 31)
#define ACTIVE (CLOSED - 1)

struct xattn_team {
	_Atomic uint64_t state; /* generation << 32 | CLOSED | helpers inside */
	_Atomic int32_t slots;  /* next worker slot to hand a helper; 0 is the caller's */
	_Atomic int64_t next;   /* next item */
	int64_t n;              /* items of the phase */
	void (*item)(const void *ctx, int slot, int64_t i);
	const void *ctx;
	struct xattn_team *free_next;
};

/* The ticket queue, the threads, and the recycled teams, under mu. */
#define QCAP 1024
typedef struct {
	struct xattn_team *t;
	uint64_t gen;
} ticket;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static ticket queue[QCAP];
static int q_head, q_len, sleepers, threads_started;
static _Atomic int q_count; /* q_len, for polling without the lock */
static struct xattn_team *free_teams;

/* SPIN_NS is how long an idle crew thread polls before it sleeps: a call's
 * phases follow each other within microseconds, a service's calls within
 * a few tens. */
#define SPIN_NS 100000

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static int64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* pop takes a ticket off the queue (mu held, q_len > 0). */
static ticket pop(void) {
	ticket k = queue[q_head];
	q_head = (q_head + 1) % QCAP;
	q_len--;
	atomic_store_explicit(&q_count, q_len, memory_order_relaxed);
	return k;
}

/* next_ticket waits for a ticket: polling for SPIN_NS, then asleep. */
static ticket next_ticket(void) {
	int64_t deadline = 0;
	for (int i = 0;; i++) {
		if (atomic_load_explicit(&q_count, memory_order_relaxed) > 0) {
			pthread_mutex_lock(&mu);
			if (q_len > 0) {
				ticket k = pop();
				pthread_mutex_unlock(&mu);
				return k;
			}
			pthread_mutex_unlock(&mu);
		}
		if ((i & 63) == 0) {
			int64_t t = now_ns();
			if (i == 0) {
				deadline = t + SPIN_NS;
			} else if (t > deadline) {
				break;
			}
		}
		relax();
	}
	pthread_mutex_lock(&mu);
	while (q_len == 0) {
		sleepers++;
		pthread_cond_wait(&wake, &mu);
		sleepers--;
	}
	ticket k = pop();
	pthread_mutex_unlock(&mu);
	return k;
}

static void work(struct xattn_team *t, int slot) {
	for (;;) {
		int64_t i = atomic_fetch_add(&t->next, 1);
		if (i >= t->n) {
			return;
		}
		t->item(t->ctx, slot, i);
	}
}

/* join runs items of t if its phase gen is still open. */
static void join(struct xattn_team *t, uint64_t gen) {
	uint64_t s = atomic_load(&t->state);
	for (;;) {
		if ((s >> 32) != gen || (s & CLOSED) != 0) {
			return;
		}
		if (atomic_compare_exchange_weak(&t->state, &s, s + 1)) {
			break;
		}
	}
	work(t, atomic_fetch_add(&t->slots, 1));
	atomic_fetch_sub(&t->state, 1);
}

static void *crew_main(void *arg) {
	(void)arg;
	for (;;) {
		ticket k = next_ticket();
		join(k.t, k.gen);
	}
	return NULL;
}

/* ensure starts crew threads until n run (mu held); it stops at the first
 * that cannot start: the callers then run more of the items themselves. */
static void ensure(int n) {
	while (threads_started < n) {
		pthread_attr_t at;
		pthread_t th;
		if (pthread_attr_init(&at) != 0) {
			return;
		}
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		int err = pthread_create(&th, &at, crew_main, NULL);
		pthread_attr_destroy(&at);
		if (err != 0) {
			return;
		}
		threads_started++;
	}
}

xattn_team *xattn_team_new(void) {
	pthread_mutex_lock(&mu);
	struct xattn_team *t = free_teams;
	if (t != NULL) {
		free_teams = t->free_next;
	}
	pthread_mutex_unlock(&mu);
	if (t == NULL) {
		t = calloc(1, sizeof *t);
	}
	return t;
}

void xattn_team_free(xattn_team *t) {
	/* Never freed: a ticket of an earlier phase may still name it; its
	 * generation keeps counting, so such a ticket never joins. */
	pthread_mutex_lock(&mu);
	t->free_next = free_teams;
	free_teams = t;
	pthread_mutex_unlock(&mu);
}

int xattn_team_threads(void) {
	pthread_mutex_lock(&mu);
	int n = threads_started;
	pthread_mutex_unlock(&mu);
	return n;
}

/* run runs items 0 … n−1 on the caller (slot 0) and up to helpers crew
 * threads, and returns when all are done and no helper is inside. */
static void run(struct xattn_team *t, int64_t n, int helpers, void (*item)(const void *, int, int64_t), const void *ctx) {
	if (helpers > n - 1) {
		helpers = (int)(n - 1);
	}
	if (helpers <= 0) {
		for (int64_t i = 0; i < n; i++) {
			item(ctx, 0, i);
		}
		return;
	}
	uint64_t gen = ((atomic_load(&t->state) >> 32) + 1) & 0xffffffffu;
	t->n = n;
	t->item = item;
	t->ctx = ctx;
	atomic_store(&t->next, 0);
	atomic_store(&t->slots, 1);
	atomic_store(&t->state, gen << 32);

	pthread_mutex_lock(&mu);
	ensure(helpers);
	int offered = 0;
	for (; offered < helpers && q_len < QCAP; offered++) {
		queue[(q_head + q_len) % QCAP] = (ticket){t, gen};
		q_len++;
	}
	atomic_store_explicit(&q_count, q_len, memory_order_relaxed);
	if (sleepers > 0 && offered > 0) {
		if (offered == 1) {
			pthread_cond_signal(&wake);
		} else {
			pthread_cond_broadcast(&wake);
		}
	}
	pthread_mutex_unlock(&mu);

	work(t, 0);
	atomic_fetch_or(&t->state, CLOSED);
	/* The items are all taken; the helpers inside are running theirs. */
	while ((atomic_load(&t->state) & ACTIVE) != 0) {
		relax();
	}
}

/* The products of a phase. */
typedef struct {
	const xattn_kernels *kt;
	const xattn_team_gemm *g;
	const float *a[XATTN_TEAM_GEMMS], *b[XATTN_TEAM_GEMMS], *bias[XATTN_TEAM_GEMMS];
	float *c[XATTN_TEAM_GEMMS];
	const xattn_team_chunk *chunks;
} gemms_ctx;

static void gemm_item(const void *ctx, int slot, int64_t i) {
	(void)slot;
	const gemms_ctx *x = ctx;
	const xattn_team_chunk *ch = &x->chunks[i];
	const xattn_team_gemm *g = &x->g[ch->g];
	const float *bias = x->bias[ch->g];
	xattn_gemm_packed(x->kt, ch->r1 - ch->r0, ch->c1 - ch->c0, g->k, 1.0f, x->a[ch->g] + ch->r0 * g->lda, g->lda,
			x->b[ch->g] + ch->b_off, 0.0f, x->c[ch->g] + ch->r0 * g->ldc + ch->c0, g->ldc,
			bias != NULL ? bias + ch->c0 : NULL);
}

void xattn_team_gemms(xattn_team *t, int threads, const xattn_kernels *kt, const xattn_team_gemm *g,
		const float *a0, const float *b0, float *c0, const float *bias0,
		const float *a1, const float *b1, float *c1, const float *bias1,
		const float *a2, const float *b2, float *c2, const float *bias2,
		const xattn_team_chunk *chunks, int nchunks) {
	gemms_ctx x = {.kt = kt, .g = g, .chunks = chunks,
			.a = {a0, a1, a2}, .b = {b0, b1, b2}, .c = {c0, c1, c2}, .bias = {bias0, bias1, bias2}};
	run(t, nchunks, threads - 1, gemm_item, &x);
}

/* The attention tasks of a phase. */
typedef struct {
	const xattn_kernels *kt;
	const xattn_attention *p;
	const float *q, *k, *v, *bias, *alibi, *kt_keys;
	float *o, *stats, *scratch;
	const unsigned char *keep;
	int64_t scratch_len;
	const xattn_task *tasks;
	int ntasks, chunk;
} attend_ctx;

static void attend_item(const void *ctx, int slot, int64_t i) {
	const attend_ctx *x = ctx;
	int t0 = (int)i * x->chunk;
	int n = x->ntasks - t0 < x->chunk ? x->ntasks - t0 : x->chunk;
	xattn_attend(x->kt, x->p, x->q, x->k, x->v, x->o, x->keep, x->bias, x->alibi, x->kt_keys, x->stats,
			x->scratch + slot * x->scratch_len, x->tasks + t0, n);
}

void xattn_team_attend(xattn_team *t, int threads, const xattn_kernels *kt, const xattn_attention *p,
		const float *q, const float *k, const float *v, float *o, const unsigned char *keep, const float *bias,
		const float *alibi, const float *kt_keys, float *stats, float *scratch, int64_t scratch_len,
		const xattn_task *tasks, int ntasks, int chunk) {
	attend_ctx x = {.kt = kt, .p = p, .q = q, .k = k, .v = v, .o = o, .keep = keep, .bias = bias, .alibi = alibi,
			.kt_keys = kt_keys, .stats = stats, .scratch = scratch, .scratch_len = scratch_len,
			.tasks = tasks, .ntasks = ntasks, .chunk = chunk};
	run(t, (ntasks + chunk - 1) / chunk, threads - 1, attend_item, &x);
}
