package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/**
 * {@code <sys/eventfd.h>}: event counters used as doorbells between threads and processes (vhost-user kick/call, the
 * VirtNvme wake-ups). {@link #eventfd_write} and {@link #eventfd_read} are data-path calls: they use the calling
 * thread's preallocated 8-byte scratch and allocate nothing.
 */
public final class Eventfd {
    public static final int EFD_SEMAPHORE = 1;
    public static final int EFD_NONBLOCK = 04000;
    public static final int EFD_CLOEXEC = 02000000;

    private static final long COUNTER_BYTES = 8;

    private static final MethodHandle EVENTFD =
            NativeSupport.downcall("eventfd", FunctionDescriptor.of(JAVA_INT, JAVA_INT, JAVA_INT));
    private static final MethodHandle READ =
            NativeSupport.downcall("read", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));
    private static final MethodHandle WRITE =
            NativeSupport.downcall("write", FunctionDescriptor.of(JAVA_LONG, JAVA_INT, ADDRESS, JAVA_LONG));

    private Eventfd() {}

    /** {@code eventfd(2)}: a new eventfd with counter {@code initval}; flags {@link #EFD_CLOEXEC} etc. */
    public static int eventfd(int initval, int flags) {
        MemorySegment capture = NativeSupport.captureState();
        int fd;
        try {
            fd = (int) EVENTFD.invokeExact(capture, initval, flags);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (fd < 0) {
            throw new ErrnoException("eventfd", NativeSupport.errno(capture));
        }
        return fd;
    }

    /**
     * Adds {@code value} (&gt; 0) to the counter; retries on {@code EINTR}. {@code EAGAIN} (a non-blocking eventfd whose
     * counter would overflow) is ignored: the counter is then non-zero, so the reader is woken anyway.
     */
    public static void eventfd_write(int fd, long value) {
        NativeSupport.Scratch scratch = NativeSupport.scratch();
        MemorySegment word = scratch.word;
        word.set(JAVA_LONG, 0, value);
        while (true) {
            long n;
            try {
                n = (long) WRITE.invokeExact(scratch.capture, fd, word, COUNTER_BYTES);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (n == COUNTER_BYTES) {
                return;
            }
            int errno = NativeSupport.errno(scratch.capture);
            if (errno == Errno.EAGAIN) {
                return;
            }
            if (errno != Errno.EINTR) {
                throw new ErrnoException("eventfd_write", errno);
            }
        }
    }

    /**
     * Reads and resets the counter (decrements by one with {@link #EFD_SEMAPHORE}); retries on {@code EINTR}.
     *
     * @return the counter value, or 0 when a non-blocking eventfd is empty ({@code EAGAIN})
     */
    public static long eventfd_read(int fd) {
        NativeSupport.Scratch scratch = NativeSupport.scratch();
        MemorySegment word = scratch.word;
        while (true) {
            long n;
            try {
                n = (long) READ.invokeExact(scratch.capture, fd, word, COUNTER_BYTES);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (n == COUNTER_BYTES) {
                return word.get(JAVA_LONG, 0);
            }
            int errno = NativeSupport.errno(scratch.capture);
            if (errno == Errno.EAGAIN) {
                return 0;
            }
            if (errno != Errno.EINTR) {
                throw new ErrnoException("eventfd_read", errno);
            }
        }
    }
}
