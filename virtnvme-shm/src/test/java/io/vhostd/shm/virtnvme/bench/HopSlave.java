package io.vhostd.shm.virtnvme.bench;

import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Path;
import java.time.Instant;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * The child JVM: the slave's role. Connects to the parent's control socket, receives the qpair memfd and both eventfds
 * ({@code SCM_RIGHTS}), maps and attaches the qpair, then runs each phase the parent sends on a fresh thread named
 * {@link HopSubmitter#THREAD_NAME} and answers with its measurements.
 */
final class HopSlave {
    private HopSlave() {}

    /**
     * @param socketName the parent's control socket, in the abstract namespace (without the leading NUL)
     * @param jfrDirectory where to write the JFR recordings of phases that ask for one; null: none asked
     * @param round round number, for file names
     */
    static void run(final String socketName, final Path jfrDirectory, final int round) throws InterruptedException {
        final int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
        try (HopChannel channel = new HopChannel(fd);
                Arena arena = Arena.ofShared()) {
            Socket.connect(fd, "\0" + socketName);
            try {
                serve(channel, arena, jfrDirectory, round);
            } catch (RuntimeException | InterruptedException | Error e) {
                channel.send(new long[] {HopChannel.FAILED});
                throw e;
            }
        }
    }

    private static void serve(final HopChannel channel, final Arena arena, final Path jfrDirectory, final int round)
            throws InterruptedException {
        final long[] words = new long[HopChannel.WORDS];
        final int[] fds = channel.expect(HopChannel.HELLO, words, HopChannel.HELLO_FD_COUNT);
        if (fds.length != HopChannel.HELLO_FD_COUNT) {
            throw new IllegalStateException("HELLO carried " + fds.length + " fds, expected "
                    + HopChannel.HELLO_FD_COUNT + " (memfd, SQ eventfd, CQ eventfd)");
        }
        final int sqEventFd = fds[HopChannel.HELLO_FD_SQ_EVENTFD];
        final int cqEventFd = fds[HopChannel.HELLO_FD_CQ_EVENTFD];
        final long mapLengthBytes = words[1];
        final MemorySegment memory = Mman.mmap(
                mapLengthBytes,
                Mman.PROT_READ | Mman.PROT_WRITE,
                Mman.MAP_SHARED,
                fds[HopChannel.HELLO_FD_MEMFD],
                0,
                arena);
        // the mapping keeps the memory; the master holds the memfd
        Unistd.close(fds[HopChannel.HELLO_FD_MEMFD]);
        final HopSubmitter submitter = new HopSubmitter(VirtNvmeQueuePair.attach(memory), sqEventFd, cqEventFd);
        try {
            while (true) {
                channel.receive(words, 0);
                if (words[0] == HopChannel.EXIT) {
                    return;
                }
                if (words[0] != HopChannel.PHASE) {
                    throw new IllegalStateException("expected PHASE or EXIT, got control message " + words[0]);
                }
                runPhase(channel, submitter, words, jfrDirectory, round);
            }
        } finally {
            Unistd.close(sqEventFd);
            Unistd.close(cqEventFd);
        }
    }

    private static void runPhase(
            final HopChannel channel,
            final HopSubmitter submitter,
            final long[] words,
            final Path jfrDirectory,
            final int round)
            throws InterruptedException {
        final HopPhase phase = VirtNvmeHopBench.phaseFromWords(words);
        final long spinNs = words[VirtNvmeHopBench.PHASE_SPIN_NS];
        final boolean jfr = words[VirtNvmeHopBench.PHASE_JFR] != 0 && jfrDirectory != null;
        final CountDownLatch sleepWarmed = new CountDownLatch(1);
        final CountDownLatch windowStarted = new CountDownLatch(1);
        final Throwable[] failure = new Throwable[1];
        final Thread hot = Thread.ofPlatform()
                .name(HopSubmitter.THREAD_NAME)
                .uncaughtExceptionHandler((t, e) -> failure[0] = e)
                .start(() -> submitter.runPhase(phase, spinNs, sleepWarmed, windowStarted));
        while (!sleepWarmed.await(100, TimeUnit.MILLISECONDS) && hot.isAlive()) {
            // the sleep warm-up runs
        }
        if (sleepWarmed.getCount() == 0) {
            channel.send(new long[] {HopChannel.SLEEP_WARMED});
        }
        while (!windowStarted.await(100, TimeUnit.MILLISECONDS) && hot.isAlive()) {
            // the warm-up runs; a submitter that died before its window is reported after the join
        }
        HopJfr recording = null;
        final Instant windowFrom = Instant.now();
        if (windowStarted.getCount() == 0) {
            channel.send(new long[] {HopChannel.WINDOW_START});
            if (jfr) {
                recording = new HopJfr(jfrDirectory.resolve("slave-round" + round + ".jfr"));
            }
        }
        hot.join();
        final Instant windowTo = Instant.now();
        if (failure[0] != null) {
            throw new IllegalStateException("phase " + phase.name() + " failed in the submitter", failure[0]);
        }
        final long[] result = HopChannel.resultWords();
        submitter.result(result);
        result[HopChannel.RESULT_JFR_HOT_EVENTS] =
                recording == null ? -1 : recording.stopAndCount(HopSubmitter.THREAD_NAME, windowFrom, windowTo);
        channel.send(result);
    }
}
