/* cuemu.cpp: the thread scheduler of the CUDA emulation (cuemu.h). Every
 * block of a launch runs to completion before the next; its threads are
 * fibers (own stacks, a small x86-64 context switch) run by a round-robin
 * loop in the order OPG_CUEMU_ORDER asks for. A thread runs until it reaches
 * a barrier or returns; a barrier releases its threads when every live
 * thread it waits for has arrived, and they run when the round's order
 * reaches them (later in this round, or in the next). */
#include "cuemu.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sys/mman.h>

#include <map>
#include <string>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUEMU_ASAN 1
#endif

#if !defined(__x86_64__)
#error "cuemu's context switch is written for x86-64"
#endif

/* cuemu_switch(save, to): saves the callee-saved registers, MXCSR and the x87
 * control word on the current stack, stores its pointer in *save, and resumes
 * the stack `to` (as saved by an earlier switch or made by fiber_stack_init). */
extern "C" void cuemu_switch(void **save, void *to);
asm(R"(
    .pushsection .text
    .globl cuemu_switch
    .type cuemu_switch, @function
cuemu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size cuemu_switch, .-cuemu_switch
    .popsection
)");

namespace cuemu {

thread_local thread_coords *g_coords;

namespace {

constexpr size_t STACK_BYTES = 256 << 10;
constexpr int MAX_THREADS = 1024;

enum state { READY, WAIT_BLOCK, WAIT_WARP, DONE };
enum warp_kind { WK_SYNCWARP, WK_EXCHANGE, WK_COLLECTIVE };

struct fiber {
    void *sp = nullptr;
    char *stack = nullptr; /* STACK_BYTES above a guard page */
    int state = DONE;
    int lane = 0, warp = 0;
    thread_coords coords;
    const char *site = nullptr; /* where it waits */
    void *fake_stack = nullptr;
};

struct warp_state {
    unsigned exists = 0, live = 0; /* lanes of the block / not returned */
    unsigned arrived = 0, mask = 0;
    int kind = 0;
    const char *site = nullptr;
    uint64_t key = 0; /* a collective's pointer and stride, the same in every lane */
    unsigned gen = 0;
    unsigned took_part[2] = {0, 0}; /* lanes of barrier gen, by parity */
    uint64_t slot[2][32];
};

struct block_state {
    int n = 0, live = 0, bar_arrived = 0;
    const char *bar_site = nullptr;
    std::vector<fiber> f;
    std::vector<warp_state> warps;
    std::vector<int> order; /* this round's order of the threads */
    int pos = -1;           /* where the round is */
    std::vector<void *> fresh; /* __shared__ variables declared in this block so far */
};

struct run_state {
    const char *kernel = "?";
    void (*body)(void *) = nullptr;
    void *arg = nullptr;
    block_state blk;
    fiber *cur = nullptr;
    void *sched_sp = nullptr;
    void *sched_fake_stack = nullptr;
    const void *sched_stack_bottom = nullptr; /* the host thread's stack (ASan) */
    size_t sched_stack_size = 0;
};

thread_local run_state *g_run;

/* ---- order of the runnable threads and of the blocks -------------------- */

enum order_kind { ORDER_FORWARD, ORDER_REVERSE, ORDER_RANDOM };
order_kind g_order = ORDER_FORWARD;
uint64_t g_rng = 0x9e3779b97f4a7c15ull;
bool g_order_read = false;

void read_order() {
    if (g_order_read) return;
    g_order_read = true;
    const char *e = getenv("OPG_CUEMU_ORDER");
    if (!e || !*e || !strcmp(e, "forward")) return;
    if (!strcmp(e, "reverse")) {
        g_order = ORDER_REVERSE;
    } else if (!strncmp(e, "random", 6)) {
        g_order = ORDER_RANDOM;
        if (e[6] == ':') g_rng ^= strtoull(e + 7, nullptr, 0) * 0xbf58476d1ce4e5b9ull;
    } else {
        die("OPG_CUEMU_ORDER=%s: expected forward, reverse or random[:seed]", e);
    }
}

uint64_t next_rand() { /* xorshift64* */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545f4914f6cdd1dull;
}

void make_order(std::vector<int> &o, int n) {
    o.resize((size_t)n);
    for (int i = 0; i < n; i++) o[(size_t)i] = g_order == ORDER_REVERSE ? n - 1 - i : i;
    if (g_order == ORDER_RANDOM)
        for (int i = n - 1; i > 0; i--) std::swap(o[(size_t)i], o[next_rand() % (uint64_t)(i + 1)]);
}

/* ---- stacks and switching -------------------------------------------------------- */

std::vector<char *> g_stacks; /* reused from launch to launch (never freed) */

char *stack_for(int i) {
    while ((int)g_stacks.size() <= i) {
        void *m = mmap(nullptr, STACK_BYTES + 4096, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) die("cannot map a fiber stack");
        mprotect(m, 4096, PROT_NONE); /* a stack overflow faults */
        g_stacks.push_back((char *)m + 4096);
    }
    return g_stacks[(size_t)i];
}

[[noreturn]] void fiber_main();

#ifdef CUEMU_ASAN
/* Per stack: the lowest address a fiber that ended on it may have left
 * poisoned (the frames live when it switched away for good). */
std::vector<char *> g_stack_dirty;
#endif

void fiber_stack_init(fiber *f, int i) {
#ifdef CUEMU_ASAN
    if ((int)g_stack_dirty.size() <= i) g_stack_dirty.resize((size_t)i + 1, nullptr);
    char *dirty = g_stack_dirty[(size_t)i];
    if (dirty) __asan_unpoison_memory_region(dirty, (size_t)(f->stack + STACK_BYTES - dirty));
    g_stack_dirty[(size_t)i] = nullptr;
#else
    (void)i;
#endif
    uintptr_t top = ((uintptr_t)f->stack + STACK_BYTES) & ~(uintptr_t)15;
    uint64_t *s = (uint64_t *)top;
    *--s = 0;                           /* fiber_main's "return address" */
    *--s = (uint64_t)(uintptr_t)&fiber_main; /* what cuemu_switch's ret jumps to */
    for (int k = 0; k < 6; k++) *--s = 0; /* rbp rbx r12 r13 r14 r15 */
    uint32_t csr[2] = {0, 0};
    asm volatile("stmxcsr %0" : "=m"(csr[0]));
    asm volatile("fnstcw %0" : "=m"(*(uint16_t *)&csr[1]));
    *--s = (uint64_t)csr[0] | ((uint64_t)csr[1] << 32);
    f->sp = s;
}

/* The next runnable thread in this round's order, starting a new round when
 * this one is over; NULL when none is runnable. */
fiber *pick_next(block_state &b) {
    for (int round = 0; round < 2; round++) {
        for (int i = b.pos + 1; i < b.n; i++)
            if (b.f[(size_t)b.order[(size_t)i]].state == READY) {
                b.pos = i;
                return &b.f[(size_t)b.order[(size_t)i]];
            }
        if (g_order == ORDER_RANDOM) make_order(b.order, b.n); /* a new order per round */
        b.pos = -1;
    }
    return nullptr;
}

/* From the running context (a fiber, or the scheduler when from is NULL) to
 * fiber `to`, or to the scheduler when `to` is NULL. A dying fiber never
 * resumes. Threads switch to each other directly: the scheduler only starts
 * a block and sees it end (or deadlock). */
void switch_to(run_state *r, fiber *from, fiber *to, bool dying) {
    void **save = from ? &from->sp : &r->sched_sp;
    void *target = to ? to->sp : r->sched_sp;
    r->cur = to;
    g_coords = to ? &to->coords : nullptr;
#ifdef CUEMU_ASAN
    void **fake = from ? &from->fake_stack : &r->sched_fake_stack;
    __sanitizer_start_switch_fiber(dying ? nullptr : fake, to ? to->stack : r->sched_stack_bottom,
                                   to ? STACK_BYTES : r->sched_stack_size);
#else
    (void)dying;
#endif
    cuemu_switch(save, target);
    /* resumed: whoever switched here set r->cur to this context */
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(*fake, nullptr, nullptr);
#endif
}

/* The current thread stops running (it waits, or it has returned). */
void yield(run_state *r, bool dying) {
    fiber *self = r->cur;
    fiber *next = pick_next(r->blk);
    if (next == self && !dying) return; /* it is the one to run next */
    switch_to(r, self, next, dying);
}

/* ---- barriers -------------------------------------------------------------------- */

void try_release_block(block_state &b) {
    if (b.bar_arrived == 0 || b.bar_arrived < b.live) return;
    for (fiber &f : b.f)
        if (f.state == WAIT_BLOCK) f.state = READY;
    b.bar_arrived = 0;
    b.bar_site = nullptr;
}

void try_release_warp(block_state &b, int w) {
    warp_state &ws = b.warps[(size_t)w];
    if (!ws.arrived || (ws.mask & ws.live & ~ws.arrived)) return;
    for (int l = 0; l < 32; l++)
        if (ws.arrived >> l & 1) b.f[(size_t)(32 * w + l)].state = READY;
    ws.took_part[ws.gen & 1] = ws.arrived;
    ws.arrived = 0;
    ws.gen++;
}

run_state *running(const char *what) {
    run_state *r = g_run;
    if (!r || !r->cur) die("%s called outside a kernel", what);
    return r;
}

/* The current thread waits at warp barrier (kind, site, mask, key); returns
 * the barrier's generation once it is released. */
unsigned warp_wait(unsigned mask, int kind, const char *site, uint64_t key = 0) {
    run_state *r = running(site);
    fiber *f = r->cur;
    block_state &b = r->blk;
    warp_state &ws = b.warps[(size_t)f->warp];
    if (mask != 0xffffffffu)
        die("kernel %s: %s with mask 0x%08x: only full-warp masks are emulated", r->kernel, site,
            mask);
    mask &= ws.exists; /* the last warp of a block may be partial */
    if (!ws.arrived) {
        ws.mask = mask;
        ws.kind = kind;
        ws.site = site;
        ws.key = key;
    } else if (ws.kind != kind || (kind != WK_SYNCWARP && ws.site != site &&
                                   strcmp(ws.site, site) != 0)) {
        die("kernel %s: lanes of warp %d meet at different warp operations: %s and %s",
            r->kernel, f->warp, ws.site, site);
    } else if (ws.key != key) {
        die("kernel %s: lanes of warp %d call %s with different pointers or strides", r->kernel,
            f->warp, site);
    }
    /* stricter than CUDA, which only asks for the lanes that have not exited */
    if (kind != WK_SYNCWARP && (mask & ~ws.live))
        die("kernel %s: %s names lanes of warp %d that have returned (0x%08x)", r->kernel, site,
            f->warp, mask & ~ws.live);
    ws.arrived |= 1u << f->lane;
    const unsigned gen = ws.gen;
    f->state = WAIT_WARP;
    f->site = site;
    try_release_warp(b, f->warp);
    yield(r, false);
    return gen;
}

[[noreturn]] void fiber_main() {
    run_state *r = g_run;
#ifdef CUEMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
    r->body(r->arg);
    fiber *f = r->cur;
    block_state &b = r->blk;
    if (b.bar_arrived > 0)
        die("kernel %s: thread %d returned while others wait at __syncthreads (%s): undefined "
            "in CUDA", r->kernel, (int)(f - b.f.data()), b.bar_site);
    const warp_state &wq = b.warps[(size_t)f->warp];
    if (wq.arrived && wq.kind != WK_SYNCWARP && (wq.mask >> f->lane & 1))
        die("kernel %s: %s names lanes of warp %d that have returned (lane %d)", r->kernel,
            wq.site, f->warp, f->lane);
    f->state = DONE;
    b.live--;
    warp_state &ws = b.warps[(size_t)f->warp];
    ws.live &= ~(1u << f->lane);
    try_release_block(b);
    try_release_warp(b, f->warp);
#ifdef CUEMU_ASAN
    /* fiber_main's frame and the few below it (yield, switch_to, ASan's own) */
    char *low = (char *)__builtin_frame_address(0) - 16384;
    g_stack_dirty[(size_t)(f - b.f.data())] = low > f->stack ? low : f->stack;
#endif
    yield(r, true);
    __builtin_unreachable();
}

void run_block(run_state *r, dim3 grid, dim3 block, idx3 bid) {
    block_state &b = r->blk;
    const int n = (int)(block.x * block.y * block.z);
    b.n = b.live = n;
    b.bar_arrived = 0;
    b.bar_site = nullptr;
    b.fresh.clear();
    b.f.assign((size_t)n, fiber());
    b.warps.assign((size_t)((n + 31) / 32), warp_state());
    for (int i = 0; i < n; i++) {
        fiber &f = b.f[(size_t)i];
        f.state = READY;
        f.lane = i % 32;
        f.warp = i / 32;
        f.coords.thread = {(unsigned)i % block.x, (unsigned)i / block.x % block.y,
                           (unsigned)i / (block.x * block.y)};
        f.coords.block = bid;
        f.coords.block_dim = {block.x, block.y, block.z};
        f.coords.grid_dim = {grid.x, grid.y, grid.z};
        f.stack = stack_for(i);
        fiber_stack_init(&f, i);
        b.warps[(size_t)f.warp].exists |= 1u << f.lane;
    }
    for (warp_state &w : b.warps) w.live = w.exists;
    make_order(b.order, n);
    b.pos = -1;
    fiber *first = pick_next(b);
    switch_to(r, nullptr, first, false); /* back when no thread can run */
    if (b.live > 0) {
        char where[512];
        int len = 0;
        for (int i = 0; i < n && len < 400; i++) {
            const fiber &f = b.f[(size_t)i];
            if (f.state == WAIT_BLOCK || f.state == WAIT_WARP)
                len += snprintf(where + len, sizeof where - (size_t)len, " [t%d %s %s]", i,
                                f.state == WAIT_BLOCK ? "__syncthreads" : "warp op", f.site);
        }
        die("kernel %s: block (%u,%u,%u) deadlocks; waiting:%s", r->kernel, bid.x, bid.y, bid.z,
            where);
    }
}

} // namespace

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("cuemu: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

int lane_id() { return running("lane_id")->cur->lane; }

void syncthreads(const char *site) {
    run_state *r = running(site);
    fiber *f = r->cur;
    block_state &b = r->blk;
    if (b.live < b.n)
        die("kernel %s: __syncthreads at %s after %d thread(s) of the block returned "
            "(undefined in CUDA)", r->kernel, site, b.n - b.live);
    if (b.bar_arrived == 0) {
        b.bar_site = site;
    } else if (b.bar_site != site && strcmp(b.bar_site, site) != 0) {
        die("kernel %s: divergent __syncthreads: threads wait at %s and at %s", r->kernel,
            b.bar_site, site);
    }
    b.bar_arrived++;
    f->state = WAIT_BLOCK;
    f->site = site;
    try_release_block(b);
    yield(r, false);
}

void syncwarp(const char *site, unsigned mask) { (void)warp_wait(mask, WK_SYNCWARP, site); }

void warp_collective(const char *what, const char *file, int line, uint64_t key) {
    /* one stable "what at file:line" string per call site */
    static std::map<std::pair<const char *, int>, std::string> sites;
    std::string &site = sites[{file, line}];
    if (site.empty()) site = std::string(what) + " at " + file + ":" + std::to_string(line);
    (void)warp_wait(0xffffffffu, WK_COLLECTIVE, site.c_str(), key);
}

void fresh_shared(void *p, size_t bytes) {
    run_state *r = running("a __shared__ declaration");
    for (void *q : r->blk.fresh)
        if (q == p) return;
    r->blk.fresh.push_back(p);
    memset(p, 0xA5, bytes); /* the block's first thread here: nobody has written it */
}

void launch_bounds(unsigned max_threads) {
    run_state *r = running("__launch_bounds__");
    if ((unsigned)r->blk.n > max_threads)
        die("kernel %s: launched with %d threads per block, over its __launch_bounds__(%u)",
            r->kernel, r->blk.n, max_threads);
}

uint64_t exchange(unsigned mask, uint64_t v, int src, const char *site) {
    run_state *r = running(site);
    fiber *f = r->cur;
    warp_state &ws = r->blk.warps[(size_t)f->warp];
    ws.slot[ws.gen & 1][f->lane] = v;
    const unsigned gen = warp_wait(mask, WK_EXCHANGE, site);
    const int s = src & 31;
    if (!(ws.took_part[gen & 1] >> s & 1))
        die("kernel %s: shuffle at %s reads lane %d of warp %d, which did not take part",
            r->kernel, site, s, f->warp);
    return ws.slot[gen & 1][s];
}

void launch(const char *kernel, dim3 grid, dim3 block, void (*body)(void *), void *arg) {
    read_order();
    if (g_run) die("kernel %s launched from inside kernel %s", kernel, g_run->kernel);
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (!grid.x || !grid.y || !grid.z || !threads || threads > MAX_THREADS || block.z > 64 ||
        grid.y > 65535 || grid.z > 65535 || grid.x > 2147483647u)
        die("kernel %s: launch <<<(%u,%u,%u), (%u,%u,%u)>>> is outside CUDA's limits", kernel,
            grid.x, grid.y, grid.z, block.x, block.y, block.z);
    run_state r;
    r.kernel = kernel;
    r.body = body;
    r.arg = arg;
#ifdef CUEMU_ASAN
    pthread_attr_t attr; /* the stack the scheduler runs on, for ASan's fiber switches */
    void *stack_addr = nullptr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0 ||
        pthread_attr_getstack(&attr, &stack_addr, &r.sched_stack_size) != 0)
        die("cannot read the host thread's stack bounds");
    pthread_attr_destroy(&attr);
    r.sched_stack_bottom = stack_addr;
#endif
    g_run = &r;
    const uint64_t nblocks = (uint64_t)grid.x * grid.y * grid.z;
    std::vector<uint64_t> perm; /* random order: the blocks shuffled too */
    if (g_order == ORDER_RANDOM) {
        perm.resize(nblocks);
        for (uint64_t k = 0; k < nblocks; k++) perm[k] = k;
        for (uint64_t k = nblocks; k > 1; k--) std::swap(perm[k - 1], perm[next_rand() % k]);
    }
    for (uint64_t k = 0; k < nblocks; k++) {
        /* reverse: the blocks last to first */
        const uint64_t i = g_order == ORDER_FORWARD   ? k
                           : g_order == ORDER_REVERSE ? nblocks - 1 - k
                                                      : perm[k];
        idx3 bid = {(unsigned)(i % grid.x), (unsigned)(i / grid.x % grid.y),
                    (unsigned)(i / ((uint64_t)grid.x * grid.y))};
        run_block(&r, grid, block, bid);
    }
    g_run = nullptr;
}

} // namespace cuemu
