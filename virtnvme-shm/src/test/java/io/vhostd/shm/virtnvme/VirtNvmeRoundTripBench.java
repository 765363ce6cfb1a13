package io.vhostd.shm.virtnvme;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Arrays;

/**
 * Queue-depth-1 round-trip latency of a VirtNvme queue pair between two polling threads of one JVM: submit, publish,
 * the executor polls and posts a completion, the submitter sees it. Not a test; later the two-process benchmark (the
 * same loop over a memfd shared by two JVMs).
 *
 * <p>Run: {@code java -cp virtnvme-shm/target/classes:virtnvme-shm/target/test-classes:<agrona.jar>
 * io.vhostd.shm.virtnvme.VirtNvmeRoundTripBench [iterations] [warmupIterations]}. Needs two idle cores to mean
 * anything.
 */
public final class VirtNvmeRoundTripBench {
    private static final int DEPTH = 64;
    private static final int MAX_SEGMENTS = 4;

    private VirtNvmeRoundTripBench() {}

    /**
     * @param args [iterations (default 1000000)] [warmup iterations (default 200000)]
     * @throws InterruptedException if interrupted while joining the executor thread
     */
    public static void main(final String[] args) throws InterruptedException {
        final int iterations = args.length > 0 ? Integer.parseInt(args[0]) : 1_000_000;
        final int warmup = args.length > 1 ? Integer.parseInt(args[1]) : 200_000;
        try (Arena arena = Arena.ofShared()) {
            final MemorySegment memory = arena.allocate(VirtNvmeDescriptor.lengthBytes(DEPTH, MAX_SEGMENTS), 64);
            final VirtNvmeQueuePair executor = VirtNvmeQueuePair.format(memory, 0, DEPTH, MAX_SEGMENTS);
            final VirtNvmeQueuePair submitter = VirtNvmeQueuePair.attach(memory);
            final Thread executorThread = Thread.ofPlatform()
                    .name("virtnvme-bench-executor")
                    .daemon()
                    .start(() -> {
                        final VirtNvmeQueuePair.SubmissionHandler complete = command ->
                                executor.postCompletion(command.cid(), VirtNvmeStatus.SUCCESS, command.lengthBytes());
                        while (!Thread.currentThread().isInterrupted()) {
                            if (executor.pollSubmissions(complete, DEPTH) > 0) {
                                executor.publishCompletions();
                            } else {
                                Thread.onSpinWait();
                            }
                        }
                    });

            final int[] regionIds = {1};
            final long[] regionOffsets = {0};
            final int[] lengths = {4096};
            final VirtNvmeQueuePair.CompletionHandler ignore = (cid, statusField, result) -> {};
            roundTrips(submitter, warmup, regionIds, regionOffsets, lengths, ignore, null);
            final long[] latencyNs = new long[iterations];
            roundTrips(submitter, iterations, regionIds, regionOffsets, lengths, ignore, latencyNs);

            executorThread.interrupt();
            executorThread.join();

            Arrays.sort(latencyNs);
            System.out.printf(
                    "VirtNvme QD1 round trip, %d iterations (after %d warm-up): p50=%d ns p99=%d ns p99.9=%d ns"
                            + " max=%d ns%n",
                    iterations,
                    warmup,
                    percentile(latencyNs, 0.50),
                    percentile(latencyNs, 0.99),
                    percentile(latencyNs, 0.999),
                    latencyNs[latencyNs.length - 1]);
        }
    }

    private static void roundTrips(
            final VirtNvmeQueuePair submitter,
            final int count,
            final int[] regionIds,
            final long[] regionOffsets,
            final int[] lengths,
            final VirtNvmeQueuePair.CompletionHandler handler,
            final long[] latencyNs) {
        for (int i = 0; i < count; i++) {
            final long startNs = System.nanoTime();
            submitter.submit(
                    VirtNvmeOpcodes.NVME_OPC_READ,
                    0,
                    i & (DEPTH - 1),
                    1,
                    0,
                    4096,
                    1,
                    regionIds,
                    regionOffsets,
                    lengths);
            submitter.publishSubmissions();
            while (submitter.pollCompletions(handler) == 0) {
                Thread.onSpinWait();
            }
            if (latencyNs != null) {
                latencyNs[i] = System.nanoTime() - startNs;
            }
        }
    }

    private static long percentile(final long[] sorted, final double fraction) {
        return sorted[Math.min(sorted.length - 1, (int) (sorted.length * fraction))];
    }
}
