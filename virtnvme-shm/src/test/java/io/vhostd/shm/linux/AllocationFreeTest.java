package io.vhostd.shm.linux;

import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.management.ManagementFactory;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

/** The data-path calls must not allocate once compiled: eventfd, poll, pread and the io_uring prep/submit/reap cycle. */
@Timeout(60)
class AllocationFreeTest {
    private static final int ITERATIONS_PER_ROUND = 20_000;
    private static final int MAX_ROUNDS = 20;

    @Test
    void shouldNotAllocateWhenDataPathCallsRunWarm() {
        assumeTrue(IoUring.isAvailable(), "io_uring is not available on this machine");
        com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean) ManagementFactory.getThreadMXBean();
        assumeTrue(threads.isThreadAllocatedMemorySupported(), "no per-thread allocation counter");
        long threadId = Thread.currentThread().threadId();
        int efd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        int memfd = Memfd.memfd_create("alloc-test", Memfd.MFD_CLOEXEC);
        IoUring.CompletionHandler ignore = (userData, res, flags) -> {};
        try (IoUring ring = new IoUring(8, 0);
                Arena arena = Arena.ofConfined()) {
            Unistd.ftruncate(memfd, 1 << 20);
            MemorySegment buf = arena.allocate(4096, 4096);
            double bestBytesPerIteration = Double.MAX_VALUE;
            // the first rounds run interpreted or C1-compiled; C2 with escape analysis must reach zero eventually
            for (int round = 0; round < MAX_ROUNDS && bestBytesPerIteration >= 0.5; round++) {
                long before = threads.getThreadAllocatedBytes(threadId);
                for (int i = 0; i < ITERATIONS_PER_ROUND; i++) {
                    Eventfd.eventfd_write(efd, 1);
                    Poll.poll(efd, Poll.POLLIN, 0);
                    Eventfd.eventfd_read(efd);
                    Unistd.pread(memfd, buf, 512, 0);
                    ring.prepRead(memfd, buf.address(), 4096, (i & 255) * 4096L, i);
                    ring.prepNop(i);
                    ring.submitAndWait(2);
                    ring.reapCompletions(ignore);
                }
                long allocated = threads.getThreadAllocatedBytes(threadId) - before;
                bestBytesPerIteration = Math.min(bestBytesPerIteration, (double) allocated / ITERATIONS_PER_ROUND);
            }
            assertTrue(bestBytesPerIteration < 0.5, "bytes allocated per iteration: " + bestBytesPerIteration);
        } finally {
            Unistd.close(memfd);
            Unistd.close(efd);
        }
    }
}
