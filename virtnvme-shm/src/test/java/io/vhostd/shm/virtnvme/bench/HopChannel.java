package io.vhostd.shm.virtnvme.bench;

import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;

/**
 * The benchmark's control connection between the two JVMs: a connected {@code AF_UNIX} stream socket carrying
 * fixed-size messages of {@value #WORDS} native-endian u64 words, word 0 the message type. The first message ({@link
 * #HELLO}) carries the qpair memfd and the two eventfds as one {@code SCM_RIGHTS} message. Control path only: it
 * allocates per message. One thread per side uses it.
 *
 * <pre>
 *  master (parent)                          slave (child)
 *   HELLO  [length of the region] + 3 fds  →
 *   PHASE  [waitMode, qd, warmupOps, ops,  →
 *           rate, maxDurationNs, spinNs,
 *           jfr]
 *                                          ←  SLEEP_WARMED  (adaptive phases: the sleep path is warm, the
 *                                                           master spins again)
 *                                          ←  WINDOW_START  (warm-up done, measured window begins)
 *                                          ←  RESULT [see {@link #resultWords}]  or  FAILED
 *   ... one PHASE per phase ...
 *   EXIT                                   →  (the child exits 0)
 * </pre>
 */
final class HopChannel implements AutoCloseable {
    static final int WORDS = 16;
    static final long MESSAGE_BYTES = WORDS * Long.BYTES;

    static final long HELLO = 1;
    static final long PHASE = 2;
    static final long WINDOW_START = 3;
    static final long RESULT = 4;
    static final long EXIT = 5;
    static final long FAILED = 6;
    static final long SLEEP_WARMED = 7;

    /** HELLO: fds in this order. */
    static final int HELLO_FD_MEMFD = 0;

    static final int HELLO_FD_SQ_EVENTFD = 1;
    static final int HELLO_FD_CQ_EVENTFD = 2;
    static final int HELLO_FD_COUNT = 3;

    /** RESULT: word indexes. */
    static final int RESULT_OPS = 1;

    static final int RESULT_WALL_NS = 2;
    static final int RESULT_P50_NS = 3;
    static final int RESULT_P99_NS = 4;
    static final int RESULT_P999_NS = 5;
    static final int RESULT_MAX_NS = 6;
    static final int RESULT_HOT_CPU_NS = 7;
    static final int RESULT_PROCESS_CPU_NS = 8;
    static final int RESULT_ALLOC_BYTES = 9;
    static final int RESULT_EVENTFD_WRITES = 10;
    static final int RESULT_SLEEPS = 11;
    static final int RESULT_JFR_HOT_EVENTS = 12;

    private final int fd;
    private final Arena arena = Arena.ofConfined();
    private final MemorySegment buffer = arena.allocate(MESSAGE_BYTES, Long.BYTES);

    /** @param fd a connected stream socket; this channel closes it */
    HopChannel(final int fd) {
        this.fd = fd;
    }

    /** @return the socket, e.g. for {@link Socket#getpeercred(int)} */
    int fd() {
        return fd;
    }

    /** Sends one message: {@code words} (at most {@value #WORDS}, the rest zero) and {@code fds}. */
    void send(final long[] words, final int... fds) {
        if (words.length > WORDS) {
            throw new IllegalArgumentException("a message has at most " + WORDS + " words: " + words.length);
        }
        buffer.fill((byte) 0);
        MemorySegment.copy(words, 0, buffer, ValueLayout.JAVA_LONG, 0, words.length);
        Socket.sendmsg(fd, buffer, MESSAGE_BYTES, fds);
    }

    /**
     * Receives one message into {@code words} ({@value #WORDS} long).
     *
     * @param maxFds descriptors accepted with it
     * @return the descriptors that came with it
     * @throws IllegalStateException if the peer closed the connection or sent more descriptors than {@code maxFds}
     */
    int[] receive(final long[] words, final int maxFds) {
        final Socket.ReceivedFully received = Socket.recvFully(fd, buffer, MESSAGE_BYTES, Math.max(1, maxFds));
        if (received.eof()) {
            throw new IllegalStateException("benchmark peer closed the control connection");
        }
        if (received.truncatedFds() || received.fds().length > maxFds) {
            for (final int extra : received.fds()) {
                Unistd.close(extra);
            }
            throw new IllegalStateException("benchmark peer sent too many descriptors (at most " + maxFds + ")");
        }
        MemorySegment.copy(buffer, ValueLayout.JAVA_LONG, 0, words, 0, WORDS);
        return received.fds();
    }

    /** Receives one message of type {@code expected}; a FAILED message or another type is an error. */
    int[] expect(final long expected, final long[] words, final int maxFds) {
        final int[] fds = receive(words, maxFds);
        if (words[0] == FAILED) {
            throw new IllegalStateException("benchmark peer failed (see its standard error)");
        }
        if (words[0] != expected) {
            throw new IllegalStateException("expected control message " + expected + ", got " + words[0]);
        }
        return fds;
    }

    @Override
    public void close() {
        arena.close();
        Unistd.close(fd);
    }

    /** @return a RESULT word array with the type set; the caller fills the {@code RESULT_*} words */
    static long[] resultWords() {
        final long[] words = new long[WORDS];
        words[0] = RESULT;
        return words;
    }
}
