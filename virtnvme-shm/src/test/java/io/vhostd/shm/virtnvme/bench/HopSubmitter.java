package io.vhostd.shm.virtnvme.bench;

import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.virtnvme.VirtNvmeOpcodes;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.lang.management.ManagementFactory;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.locks.LockSupport;

/**
 * The slave's side of the hop: submits 4 KiB READ commands (one inline segment; the null device touches no memory)
 * with CIDs from a free list, keeps {@code queueDepth} of them outstanding, and records each round trip (from just
 * before {@code submit} to the moment the CQE is seen) in a {@link LatencyHistogram}. It waits as the slave's
 * controller does: in {@link HopPhase#WAIT_POLL} mode it spins on the CQ; in {@link HopPhase#WAIT_ADAPTIVE} mode it
 * spins for {@code spinNs}, then stores its CQ event index ({@link VirtNvmeQueuePair#armCompletionWakeup()}) and sleeps
 * in poll(2) on the CQ eventfd. Between paced commands it parks (the guest has nothing to submit).
 *
 * <p>{@link #runPhase} runs on a thread named {@link #THREAD_NAME}; the other methods read its results after that
 * thread has been joined. The measured window allocates nothing: every buffer is allocated here, once.
 */
final class HopSubmitter implements VirtNvmeQueuePair.CompletionHandler {
    /** Thread name, also how JFR events of this thread are found. */
    static final String THREAD_NAME = "virtnvme-hop-submitter";

    private static final int NSID = 1;
    private static final int BLOCK_BYTES = 4096;
    private static final long OFFSET_MASK = (1L << 30) - 1;
    private static final int SLEEP_TIMEOUT_MS = 1000;
    /**
     * Adaptive phases first run this many round trips with no spin on either side, so that both sleep on every one:
     * the sleep/wake path (eventfd write, poll, eventfd read through FFM) must reach C2 before any window, or a window
     * that sleeps measures C1 code, which allocates the errno capture slice of every downcall. C2 takes a method after
     * about 5 000 calls (Tier4InvocationThreshold).
     */
    static final long SLEEP_WARMUP_OPS = 20_000;

    /** Shortest warm-up, whatever the op count: time for the JIT on a loaded 2-vCPU machine. */
    static final long WARMUP_MIN_NS = 2_000_000_000L;

    private static final com.sun.management.ThreadMXBean THREADS =
            (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
    private static final com.sun.management.OperatingSystemMXBean OS =
            (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();

    private final VirtNvmeQueuePair qp;
    private final int sqEventFd;
    private final int cqEventFd;
    private final int depth;

    private final int[] regionIds = {1};
    private final long[] regionOffsets = {0};
    private final int[] segmentLengths = {BLOCK_BYTES};

    private final long[] startNs;
    private final boolean[] outstandingCid;
    private final int[] freeCids;
    private final LatencyHistogram histogram = new LatencyHistogram();

    private int freeCount;
    private int outstanding;
    private long completedInRun;
    private long offsetBytes;
    private boolean recording;
    private long batchNowNs;
    private long eventfdWrites;
    private long sleeps;
    private long parkOvershootNs;

    // results of the last phase
    private long windowOps;
    private long windowWallNs;
    private long windowHotCpuNs;
    private long windowProcessCpuNs;
    private long windowAllocBytes;
    private long windowEventfdWrites;
    private long windowSleeps;

    /**
     * @param qp the attached queue pair; only its submitter role is used, and no command may be outstanding
     * @param sqEventFd wakes the master
     * @param cqEventFd wakes this side (the master writes it)
     */
    HopSubmitter(final VirtNvmeQueuePair qp, final int sqEventFd, final int cqEventFd) {
        this.qp = qp;
        this.sqEventFd = sqEventFd;
        this.cqEventFd = cqEventFd;
        this.depth = qp.depth();
        this.startNs = new long[depth];
        this.outstandingCid = new boolean[depth];
        this.freeCids = new int[depth];
        for (int cid = depth - 1; cid >= 0; cid--) {
            freeCids[freeCount++] = cid;
        }
    }

    /**
     * Runs one phase: for an adaptive phase first {@link #SLEEP_WARMUP_OPS} round trips that sleep every time (the
     * master is told not to spin meanwhile), then counts down {@code sleepWarmed}; then the warm-up round trips, then
     * counts down {@code windowStarted} and runs the measured window. The idle phase submits nothing and waits
     * adaptively for {@code maxDurationNs}.
     *
     * @param phase what to run; its queue depth at most the qpair's depth
     * @param spinNs adaptive spin budget
     * @param sleepWarmed counted down when the sleep warm-up is over (at once for poll and idle phases)
     * @param windowStarted counted down when the measured window begins
     */
    void runPhase(
            final HopPhase phase,
            final long spinNs,
            final CountDownLatch sleepWarmed,
            final CountDownLatch windowStarted) {
        if (phase.queueDepth() > depth) {
            throw new IllegalArgumentException("queue depth " + phase.queueDepth() + " > qpair depth " + depth);
        }
        histogram.reset();
        if (phase.waitMode() == HopPhase.WAIT_ADAPTIVE && !phase.isIdle()) {
            final HopPhase sleepEveryTime = new HopPhase(
                    "sleep-warmup", HopPhase.WAIT_ADAPTIVE, 1, 0, SLEEP_WARMUP_OPS, 0, phase.maxDurationNs());
            runOps(sleepEveryTime, 0, SLEEP_WARMUP_OPS, false, System.nanoTime() + phase.maxDurationNs());
        }
        sleepWarmed.countDown();
        if (!phase.isIdle()) {
            final long warmupStartNs = System.nanoTime();
            final long warmupDeadlineNs = warmupStartNs + phase.maxDurationNs();
            // at least WARMUP_MIN_NS too: C2 must have compiled this phase's paths (a new wait mode deoptimizes the
            // loop) before the window, or the window measures the interpreter
            do {
                runOps(phase, spinNs, phase.warmupOps(), false, warmupDeadlineNs);
            } while (System.nanoTime() - warmupStartNs < Math.min(WARMUP_MIN_NS, phase.maxDurationNs()));
        }
        windowStarted.countDown();
        final long eventfdWrites0 = eventfdWrites;
        final long sleeps0 = sleeps;
        final long processCpu0 = OS.getProcessCpuTime();
        final long hotCpu0 = THREADS.getCurrentThreadCpuTime();
        final long start = System.nanoTime();
        // last before the window, first after it: nothing the measurement itself does is counted
        final long alloc0 = THREADS.getCurrentThreadAllocatedBytes();
        final long ops;
        if (phase.isIdle()) {
            idle(start + phase.maxDurationNs(), spinNs);
            ops = 0;
        } else {
            ops = runOps(phase, spinNs, phase.ops(), true, start + phase.maxDurationNs());
        }
        final long alloc1 = THREADS.getCurrentThreadAllocatedBytes();
        final long end = System.nanoTime();
        windowHotCpuNs = THREADS.getCurrentThreadCpuTime() - hotCpu0;
        windowProcessCpuNs = OS.getProcessCpuTime() - processCpu0;
        windowAllocBytes = alloc1 - alloc0;
        windowWallNs = end - start;
        windowOps = ops;
        windowEventfdWrites = eventfdWrites - eventfdWrites0;
        windowSleeps = sleeps - sleeps0;
    }

    /**
     * Fills the RESULT words of the last phase (after its thread was joined).
     *
     * @param words {@link HopChannel#resultWords()}
     */
    void result(final long[] words) {
        words[HopChannel.RESULT_OPS] = windowOps;
        words[HopChannel.RESULT_WALL_NS] = windowWallNs;
        words[HopChannel.RESULT_P50_NS] = histogram.valueAtFractionNs(0.50);
        words[HopChannel.RESULT_P99_NS] = histogram.valueAtFractionNs(0.99);
        words[HopChannel.RESULT_P999_NS] = histogram.valueAtFractionNs(0.999);
        words[HopChannel.RESULT_MAX_NS] = histogram.maxNs();
        words[HopChannel.RESULT_HOT_CPU_NS] = windowHotCpuNs;
        words[HopChannel.RESULT_PROCESS_CPU_NS] = windowProcessCpuNs;
        words[HopChannel.RESULT_ALLOC_BYTES] = windowAllocBytes;
        words[HopChannel.RESULT_EVENTFD_WRITES] = windowEventfdWrites;
        words[HopChannel.RESULT_SLEEPS] = windowSleeps;
    }

    /** @return round trips measured in the last phase's window (the histogram's count) */
    long recordedCount() {
        return histogram.totalCount();
    }

    @Override
    public void onCompletion(final int cid, final int statusField, final int result) {
        // untrusted: a CID we do not have outstanding must not complete anything
        if (cid >= depth || !outstandingCid[cid]) {
            throw new IllegalStateException("completion for cid " + cid + " that is not outstanding");
        }
        if (statusField != VirtNvmeStatus.SUCCESS || result != BLOCK_BYTES) {
            throw new IllegalStateException(
                    "cid " + cid + " completed with status 0x" + Integer.toHexString(statusField) + ", result " + result
                            + " (null device: SUCCESS, " + BLOCK_BYTES + ")");
        }
        if (batchNowNs == 0) {
            batchNowNs = System.nanoTime();
        }
        if (recording) {
            histogram.record(batchNowNs - startNs[cid]);
        }
        outstandingCid[cid] = false;
        freeCids[freeCount++] = cid;
        outstanding--;
        completedInRun++;
    }

    /**
     * Runs {@code count} round trips (fewer if {@code deadlineNs} passes first) and waits for every outstanding
     * completion.
     *
     * @return round trips completed
     */
    private long runOps(
            final HopPhase phase, final long spinNs, final long count, final boolean record, final long deadlineNs) {
        final int queueDepth = phase.queueDepth();
        final boolean adaptive = phase.waitMode() == HopPhase.WAIT_ADAPTIVE;
        final long intervalNs = phase.rateOpsPerSec() == 0 ? 0 : 1_000_000_000L / phase.rateOpsPerSec();
        // a paced command must find both sides asleep: it comes at least twice the spin budget after the completion
        final long minGapNs = Math.max(intervalNs / 4, 2 * spinNs);
        recording = record;
        completedInRun = 0;
        long limit = count;
        long submitted = 0;
        long nextDueNs = System.nanoTime();
        long idleSinceNs = 0;
        while (completedInRun < limit) {
            if (outstanding < queueDepth && submitted < limit) {
                final long nowNs = System.nanoTime();
                if (nowNs - deadlineNs > 0) {
                    // out of time: submit nothing more, drain what is outstanding
                    limit = submitted;
                    continue;
                }
                if (intervalNs == 0) {
                    submitted += submitBatch(nowNs, (int) Math.min(queueDepth - outstanding, limit - submitted));
                } else if (outstanding == 0) {
                    // parkNanos wakes late by about the timer slack: park for that much less than the wait
                    final long earlyNs = adaptive ? parkOvershootNs : 0;
                    if (nextDueNs - nowNs > earlyNs) {
                        pace(nextDueNs, adaptive);
                        continue;
                    }
                    submitted += submitBatch(nowNs, 1);
                    nextDueNs += intervalNs;
                }
            }
            batchNowNs = 0;
            if (qp.pollCompletions(this) > 0) {
                if (intervalNs != 0) {
                    // no catch-up burst after a slow round trip
                    nextDueNs = Math.max(nextDueNs, batchNowNs + minGapNs);
                }
                idleSinceNs = 0;
                continue;
            }
            if (outstanding == 0) {
                continue;
            }
            if (!adaptive) {
                Thread.onSpinWait();
                continue;
            }
            final long nowNs = System.nanoTime();
            if (idleSinceNs == 0) {
                idleSinceNs = nowNs;
            }
            if (nowNs - idleSinceNs < spinNs) {
                Thread.onSpinWait();
                continue;
            }
            idleSinceNs = 0;
            sleepOnCompletions(SLEEP_TIMEOUT_MS);
        }
        recording = false;
        return completedInRun;
    }

    /** Submits {@code n} commands stamped {@code nowNs}, then publishes them once. */
    private int submitBatch(final long nowNs, final int n) {
        for (int i = 0; i < n; i++) {
            final int cid = freeCids[--freeCount];
            outstandingCid[cid] = true;
            startNs[cid] = nowNs;
            offsetBytes = (offsetBytes + BLOCK_BYTES) & OFFSET_MASK;
            if (!qp.submit(
                    VirtNvmeOpcodes.NVME_OPC_READ,
                    0,
                    cid,
                    NSID,
                    offsetBytes,
                    BLOCK_BYTES,
                    1,
                    regionIds,
                    regionOffsets,
                    segmentLengths)) {
                throw new IllegalStateException("SQ full with " + outstanding + " commands outstanding (spec §8)");
            }
        }
        outstanding += n;
        if (qp.publishSubmissions()) {
            Eventfd.eventfd_write(sqEventFd, 1);
            eventfdWrites++;
        }
        return n;
    }

    /**
     * Paced and nothing outstanding: waits for the next command's slot at {@code dueNs}. Adaptive: parks (the guest
     * has nothing to submit) for the wait minus the learnt overshoot of parkNanos (timer slack, 50 µs by default), so
     * that the command goes out near its slot without spinning; poll: spins.
     */
    private void pace(final long dueNs, final boolean adaptive) {
        if (!adaptive) {
            while (System.nanoTime() - dueNs < 0) {
                Thread.onSpinWait();
            }
            return;
        }
        final long startNs = System.nanoTime();
        final long parkNs = dueNs - startNs - parkOvershootNs;
        LockSupport.parkNanos(parkNs);
        final long overshootNs = System.nanoTime() - startNs - parkNs;
        // moving average over about 8 waits; an early return (interrupt, spurious) counts as 0
        parkOvershootNs += (Math.max(0, overshootNs) - parkOvershootNs) / 8;
    }

    /** The idle phase: nothing submitted, the adaptive wait until {@code deadlineNs}. */
    private void idle(final long deadlineNs, final long spinNs) {
        final long spinUntilNs = System.nanoTime() + spinNs;
        while (true) {
            final long nowNs = System.nanoTime();
            final long remainingNs = deadlineNs - nowNs;
            if (remainingNs <= 0) {
                return;
            }
            if (qp.pollCompletions(this) > 0) {
                throw new IllegalStateException("a completion arrived while nothing was submitted");
            }
            if (nowNs - spinUntilNs < 0) {
                Thread.onSpinWait();
                continue;
            }
            sleepOnCompletions((int) Math.max(1, Math.min(SLEEP_TIMEOUT_MS, remainingNs / 1_000_000)));
        }
    }

    /** spec §6.7 "Slave, before it sleeps": arm, look again, then block on the CQ eventfd. */
    private void sleepOnCompletions(final int timeoutMs) {
        if (qp.armCompletionWakeup()) {
            return;
        }
        sleeps++;
        if ((Poll.poll(cqEventFd, Poll.POLLIN, timeoutMs) & Poll.POLLIN) != 0) {
            // readable and non-blocking: drains the counter, several writes cost one wake-up
            Eventfd.eventfd_read(cqEventFd);
        }
    }
}
