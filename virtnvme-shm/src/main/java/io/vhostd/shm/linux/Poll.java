package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;
import static java.lang.foreign.ValueLayout.JAVA_SHORT;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;
import java.util.Objects;

/** {@code <poll.h>}: {@code poll(2)} over one descriptor or over a preallocated {@link PollSet}. */
public final class Poll {
    public static final short POLLIN = 0x001;
    public static final short POLLPRI = 0x002;
    public static final short POLLOUT = 0x004;
    public static final short POLLERR = 0x008;
    public static final short POLLHUP = 0x010;
    public static final short POLLNVAL = 0x020;
    public static final short POLLRDHUP = 0x2000;

    /** {@code struct pollfd { int fd; short events; short revents; }}: 8 bytes. */
    static final long POLLFD_SIZE = 8;

    static final long POLLFD_FD_OFFSET = 0;
    static final long POLLFD_EVENTS_OFFSET = 4;
    static final long POLLFD_REVENTS_OFFSET = 6;

    private static final MethodHandle POLL =
            NativeSupport.downcall("poll", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));

    private Poll() {}

    /**
     * {@code poll(2)} on one descriptor, without allocating (the thread's scratch holds the {@code pollfd}).
     *
     * @param timeoutMs -1 waits forever, 0 returns at once
     * @return the {@code revents} bits, 0 on timeout or {@code EINTR}
     */
    public static int poll(int fd, short events, int timeoutMs) {
        NativeSupport.Scratch scratch = NativeSupport.scratch();
        MemorySegment pollfd = scratch.pollfd;
        pollfd.set(JAVA_INT, POLLFD_FD_OFFSET, fd);
        pollfd.set(JAVA_SHORT, POLLFD_EVENTS_OFFSET, events);
        pollfd.set(JAVA_SHORT, POLLFD_REVENTS_OFFSET, (short) 0);
        int rc;
        try {
            rc = (int) POLL.invokeExact(scratch.capture, pollfd, 1L, timeoutMs);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (rc < 0) {
            int errno = NativeSupport.errno(scratch.capture);
            if (errno == Errno.EINTR) {
                return 0;
            }
            throw new ErrnoException("poll", errno);
        }
        return rc == 0 ? 0 : pollfd.get(JAVA_SHORT, POLLFD_REVENTS_OFFSET);
    }

    /**
     * A preallocated {@code struct pollfd[capacity]}, reusable without allocation. Used by one thread at a time. Entries
     * {@code [0, size())} are polled; {@link #set} grows {@code size()} to cover the entry it sets.
     */
    public static final class PollSet implements AutoCloseable {
        private final Arena arena;
        private final MemorySegment pollfds;
        private final MemorySegment capture;
        private final int capacity;
        private int size;

        /** @param capacity the number of entries, &gt; 0 */
        public PollSet(int capacity) {
            if (capacity <= 0) {
                throw new IllegalArgumentException("capacity must be > 0: " + capacity);
            }
            this.capacity = capacity;
            this.arena = Arena.ofShared();
            this.pollfds = arena.allocate(POLLFD_SIZE * capacity, 8);
            this.capture = NativeSupport.allocateCaptureState(arena);
        }

        /** Sets entry {@code i} to watch {@code fd} for {@code events}; a negative fd makes the kernel skip it. */
        public void set(int i, int fd, short events) {
            Objects.checkIndex(i, capacity);
            long base = i * POLLFD_SIZE;
            pollfds.set(JAVA_INT, base + POLLFD_FD_OFFSET, fd);
            pollfds.set(JAVA_SHORT, base + POLLFD_EVENTS_OFFSET, events);
            pollfds.set(JAVA_SHORT, base + POLLFD_REVENTS_OFFSET, (short) 0);
            if (i >= size) {
                size = i + 1;
            }
        }

        /** The number of entries {@link #poll} watches. */
        public int size() {
            return size;
        }

        /** Sets the number of entries {@link #poll} watches, {@code 0 <= n <= capacity}. */
        public void size(int n) {
            Objects.checkIndex(n, capacity + 1);
            size = n;
        }

        /** The number of entries this set can hold. */
        public int capacity() {
            return capacity;
        }

        /**
         * {@code poll(2)} on the first {@link #size()} entries.
         *
         * @return the number of entries with non-zero {@link #revents}; 0 on timeout or {@code EINTR}
         */
        public int poll(int timeoutMs) {
            int rc;
            try {
                rc = (int) POLL.invokeExact(capture, pollfds, (long) size, timeoutMs);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (rc < 0) {
                int errno = NativeSupport.errno(capture);
                if (errno == Errno.EINTR) {
                    for (int i = 0; i < size; i++) {
                        pollfds.set(JAVA_SHORT, i * POLLFD_SIZE + POLLFD_REVENTS_OFFSET, (short) 0);
                    }
                    return 0;
                }
                throw new ErrnoException("poll", errno);
            }
            return rc;
        }

        /** The events the last {@link #poll} reported for entry {@code i}. */
        public short revents(int i) {
            Objects.checkIndex(i, size);
            return pollfds.get(JAVA_SHORT, i * POLLFD_SIZE + POLLFD_REVENTS_OFFSET);
        }

        /** The descriptor of entry {@code i}. */
        public int fd(int i) {
            Objects.checkIndex(i, size);
            return pollfds.get(JAVA_INT, i * POLLFD_SIZE + POLLFD_FD_OFFSET);
        }

        /** Frees the native array; the descriptors are not closed. */
        @Override
        public void close() {
            arena.close();
        }
    }
}
