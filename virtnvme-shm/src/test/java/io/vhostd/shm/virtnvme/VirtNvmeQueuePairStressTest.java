package io.vhostd.shm.virtnvme;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.Semaphore;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/**
 * One submitter thread (the test thread) and one executor thread over one region, each with its own instance as in
 * two processes. Every command carries its sequence number; every CID must come back exactly once per submission
 * with that number. A {@link Semaphore} per direction stands in for the eventfd (a counter; the sleeper drains it).
 */
class VirtNvmeQueuePairStressTest {
    private static final int DEPTH = 64;
    private static final int MAX_SEGMENTS = 4;
    private static final int NSID = 1;
    private static final int SEGMENT_BYTES = 512;

    @Test
    @Timeout(120)
    void shouldCompleteEveryCidExactlyOnceWhenTwoThreadsPoll() throws Exception {
        final Result result = run(1_000_000, Integer.MAX_VALUE);
        assertEquals(0, result.executorSleeps());
    }

    @Test
    @Timeout(120)
    void shouldLoseNoWakeupWhenBothSidesSleepWheneverIdle() throws Exception {
        final Result result = run(1_000_000, 0);
        assertTrue(result.executorSleeps() + result.submitterSleeps() > 0, "the sleep path was exercised");
    }

    record Result(long executorSleeps, long submitterSleeps) {}

    /**
     * @param commands commands to run through
     * @param spinBudget empty polls before a side arms its event index and sleeps
     */
    private static Result run(final int commands, final int spinBudget) throws Exception {
        try (Arena arena = Arena.ofShared()) {
            final MemorySegment memory = arena.allocate(VirtNvmeDescriptor.lengthBytes(DEPTH, MAX_SEGMENTS), 64);
            final VirtNvmeQueuePair executor = VirtNvmeQueuePair.format(memory, 1, DEPTH, MAX_SEGMENTS);
            final VirtNvmeQueuePair submitter = VirtNvmeQueuePair.attach(memory);
            final Semaphore sqEventfd = new Semaphore(0);
            final Semaphore cqEventfd = new Semaphore(0);
            final ExecutorLoop loop = new ExecutorLoop(executor, sqEventfd, cqEventfd, spinBudget);
            final Thread thread =
                    Thread.ofPlatform().name("virtnvme-executor").daemon().start(loop);
            try {
                final long submitterSleeps = submit(submitter, sqEventfd, cqEventfd, commands, spinBudget, loop);
                return new Result(loop.sleeps, submitterSleeps);
            } finally {
                loop.stop = true;
                sqEventfd.release();
                thread.join();
                if (loop.failure.get() != null) {
                    throw new AssertionError("executor failed", loop.failure.get());
                }
            }
        }
    }

    private static long submit(
            final VirtNvmeQueuePair submitter,
            final Semaphore sqEventfd,
            final Semaphore cqEventfd,
            final int commands,
            final int spinBudget,
            final ExecutorLoop loop)
            throws InterruptedException {
        final int[] freeCids = new int[DEPTH];
        final boolean[] outstanding = new boolean[DEPTH];
        final int[] seqOfCid = new int[DEPTH];
        final boolean[] completed = new boolean[commands];
        final int[] regionIds = new int[MAX_SEGMENTS];
        final long[] regionOffsets = new long[MAX_SEGMENTS];
        final int[] lengths = new int[MAX_SEGMENTS];
        final int[] state = {DEPTH, 0}; // free CID count, completed count
        for (int cid = 0; cid < DEPTH; cid++) {
            freeCids[cid] = DEPTH - 1 - cid;
        }
        final VirtNvmeQueuePair.CompletionHandler onCompletion = (cid, statusField, result) -> {
            if (cid >= DEPTH || !outstanding[cid]) {
                throw new AssertionError("completion for a CID not outstanding: cid=" + cid);
            }
            if (statusField != VirtNvmeStatus.SUCCESS || result != seqOfCid[cid]) {
                throw new AssertionError("cid=" + cid + " seq=" + seqOfCid[cid] + ": status="
                        + VirtNvmeStatus.name(statusField) + " result=" + result);
            }
            if (completed[result]) {
                throw new AssertionError("seq " + result + " completed twice");
            }
            completed[result] = true;
            outstanding[cid] = false;
            freeCids[state[0]++] = cid;
            state[1]++;
        };

        int nextSeq = 0;
        int idle = 0;
        long sleeps = 0;
        while (state[1] < commands) {
            int submitted = 0;
            while (state[0] > 0 && nextSeq < commands) {
                final int cid = freeCids[--state[0]];
                final int segmentCount = 1 + nextSeq % MAX_SEGMENTS; // inline and indirect, in turn
                for (int i = 0; i < segmentCount; i++) {
                    regionIds[i] = nextSeq + i;
                    regionOffsets[i] = (long) nextSeq * SEGMENT_BYTES * MAX_SEGMENTS + (long) i * SEGMENT_BYTES;
                    lengths[i] = SEGMENT_BYTES;
                }
                if (!submitter.submit(
                        VirtNvmeOpcodes.NVME_OPC_WRITE,
                        0,
                        cid,
                        NSID,
                        nextSeq,
                        segmentCount * SEGMENT_BYTES,
                        segmentCount,
                        regionIds,
                        regionOffsets,
                        lengths)) {
                    throw new AssertionError("SQ full with at most depth commands outstanding");
                }
                outstanding[cid] = true;
                seqOfCid[cid] = nextSeq++;
                submitted++;
            }
            if (submitted > 0 && submitter.publishSubmissions()) {
                sqEventfd.release();
            }
            if (submitter.pollCompletions(onCompletion) > 0) {
                idle = 0;
            } else if (loop.failure.get() != null) {
                return sleeps;
            } else if (++idle > spinBudget) {
                if (!submitter.armCompletionWakeup()) {
                    cqEventfd.acquire();
                    cqEventfd.drainPermits();
                    sleeps++;
                }
                idle = 0;
            } else if ((idle & 63) == 0) {
                Thread.yield(); // two cores shared with other builds: let the executor run
            } else {
                Thread.onSpinWait();
            }
        }
        for (int seq = 0; seq < commands; seq++) {
            if (!completed[seq]) {
                throw new AssertionError("seq " + seq + " never completed");
            }
        }
        assertEquals(DEPTH, state[0], "every CID free at the end");
        return sleeps;
    }

    /** The executor side: takes commands, checks them, completes each with result = its sequence number. */
    private static final class ExecutorLoop implements Runnable, VirtNvmeQueuePair.SubmissionHandler {
        private final VirtNvmeQueuePair executor;
        private final Semaphore sqEventfd;
        private final Semaphore cqEventfd;
        private final int spinBudget;
        final AtomicReference<Throwable> failure = new AtomicReference<>();
        volatile boolean stop;
        volatile long sleeps;

        ExecutorLoop(
                final VirtNvmeQueuePair executor,
                final Semaphore sqEventfd,
                final Semaphore cqEventfd,
                final int spinBudget) {
            this.executor = executor;
            this.sqEventfd = sqEventfd;
            this.cqEventfd = cqEventfd;
            this.spinBudget = spinBudget;
        }

        @Override
        public void run() {
            try {
                int idle = 0;
                long sleepCount = 0;
                while (!stop) {
                    if (executor.pollSubmissions(this, 32) > 0) {
                        if (executor.publishCompletions()) {
                            cqEventfd.release();
                        }
                        idle = 0;
                    } else if (++idle > spinBudget) {
                        if (!executor.armSubmissionWakeup()) {
                            sqEventfd.acquire();
                            sqEventfd.drainPermits();
                            sleeps = ++sleepCount;
                        }
                        idle = 0;
                    } else if ((idle & 63) == 0) {
                        Thread.yield();
                    } else {
                        Thread.onSpinWait();
                    }
                }
            } catch (final Throwable t) {
                failure.set(t);
                cqEventfd.release();
            }
        }

        @Override
        public void onSubmission(final VirtNvmeQueuePair.Command command) {
            final int seq = (int) command.offsetBytes();
            boolean ok = command.validate() == VirtNvmeStatus.SUCCESS
                    && command.opcode() == VirtNvmeOpcodes.NVME_OPC_WRITE
                    && command.nsid() == NSID
                    && command.segmentCount() == 1 + seq % MAX_SEGMENTS
                    && command.isSegmentsIndirect() == (command.segmentCount() > VirtNvmeDescriptor.INLINE_SEGMENTS);
            for (int i = 0; ok && i < command.segmentCount(); i++) {
                ok = command.segmentRegionId(i) == seq + i
                        && command.segmentRegionOffset(i)
                                == (long) seq * SEGMENT_BYTES * MAX_SEGMENTS + (long) i * SEGMENT_BYTES
                        && command.segmentLengthBytes(i) == SEGMENT_BYTES;
            }
            final int status = ok ? VirtNvmeStatus.SUCCESS : VirtNvmeStatus.INTERNAL_ERROR;
            if (!executor.postCompletion(command.cid(), status, seq)) {
                throw new IllegalStateException("CQ full with at most depth commands outstanding");
            }
        }
    }
}
