package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.invoke.MethodHandle;

/** {@code <sys/mman.h>}: memory mappings. Every mapping is owned by an {@link Arena}, which unmaps it on close. */
// restricted FFM methods are this package's job; the JVM runs with --enable-native-access
@SuppressWarnings("restricted")
public final class Mman {
    public static final int PROT_NONE = 0x0;
    public static final int PROT_READ = 0x1;
    public static final int PROT_WRITE = 0x2;
    public static final int PROT_EXEC = 0x4;

    public static final int MAP_SHARED = 0x01;
    public static final int MAP_PRIVATE = 0x02;
    public static final int MAP_SHARED_VALIDATE = 0x03;
    public static final int MAP_FIXED = 0x10;
    public static final int MAP_ANONYMOUS = 0x20;
    public static final int MAP_LOCKED = 0x2000;
    public static final int MAP_NORESERVE = 0x4000;
    public static final int MAP_POPULATE = 0x8000;
    public static final int MAP_HUGETLB = 0x40000;
    public static final int MAP_FIXED_NOREPLACE = 0x100000;
    public static final int MAP_HUGE_SHIFT = 26;
    public static final int MAP_HUGE_2MB = 21 << MAP_HUGE_SHIFT;
    public static final int MAP_HUGE_1GB = 30 << MAP_HUGE_SHIFT;

    public static final int MADV_NORMAL = 0;
    public static final int MADV_RANDOM = 1;
    public static final int MADV_SEQUENTIAL = 2;
    public static final int MADV_WILLNEED = 3;
    public static final int MADV_DONTNEED = 4;
    public static final int MADV_REMOVE = 9;
    public static final int MADV_DONTFORK = 10;
    public static final int MADV_DOFORK = 11;
    public static final int MADV_HUGEPAGE = 14;
    public static final int MADV_NOHUGEPAGE = 15;
    public static final int MADV_DONTDUMP = 16;
    public static final int MADV_DODUMP = 17;
    public static final int MADV_POPULATE_READ = 22;
    public static final int MADV_POPULATE_WRITE = 23;

    public static final int MS_ASYNC = 1;
    public static final int MS_INVALIDATE = 2;
    public static final int MS_SYNC = 4;

    /** {@code MAP_FAILED}, i.e. {@code (void *) -1}. */
    private static final long MAP_FAILED = -1L;

    private static final MethodHandle MMAP = NativeSupport.downcall(
            "mmap", FunctionDescriptor.of(ADDRESS, ADDRESS, JAVA_LONG, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_LONG));
    private static final MethodHandle MUNMAP =
            NativeSupport.downcall("munmap", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));
    /** munmap for arena cleanup actions, which may run on any thread (even a cleaner) and must not touch errno state. */
    private static final MethodHandle MUNMAP_QUIETLY =
            NativeSupport.downcallNoErrno("munmap", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG));

    private static final MethodHandle MADVISE =
            NativeSupport.downcall("madvise", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT));
    private static final MethodHandle MSYNC =
            NativeSupport.downcall("msync", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_INT));

    private Mman() {}

    /**
     * {@code mmap(2)} at an address the kernel chooses.
     *
     * @param lengthBytes mapping length, &gt; 0; the returned segment has exactly this size
     * @param offset file offset, a multiple of the page size (of the huge page size for hugetlb files)
     * @param arena owner of the mapping: {@code munmap(2)} runs when it closes
     * @return the mapped memory
     * @throws ErrnoException e.g. {@code ENOMEM} when a hugetlb mapping cannot reserve its huge pages
     */
    public static MemorySegment mmap(long lengthBytes, int prot, int flags, int fd, long offset, Arena arena) {
        if (lengthBytes <= 0) {
            throw new IllegalArgumentException("mmap length must be > 0: " + lengthBytes);
        }
        MemorySegment capture = NativeSupport.captureState();
        MemorySegment address;
        try {
            address =
                    (MemorySegment) MMAP.invokeExact(capture, MemorySegment.NULL, lengthBytes, prot, flags, fd, offset);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (address.address() == MAP_FAILED) {
            throw new ErrnoException("mmap", NativeSupport.errno(capture));
        }
        long base = address.address();
        try {
            return address.reinterpret(lengthBytes, arena, unused -> munmapQuietly(base, lengthBytes));
        } catch (RuntimeException e) {
            // the arena is closed or owned by another thread: do not leak the mapping
            munmapQuietly(base, lengthBytes);
            throw e;
        }
    }

    /**
     * {@code munmap(2)} of the whole segment. Only for a segment whose arena will NOT unmap it (one obtained from
     * {@link #mmap} with {@link Arena#global()}): unmapping a range twice can unmap an unrelated later mapping.
     */
    public static void munmap(MemorySegment seg) {
        MemorySegment capture = NativeSupport.captureState();
        int rc;
        try {
            rc = (int) MUNMAP.invokeExact(capture, seg.address(), seg.byteSize());
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (rc < 0) {
            throw new ErrnoException("munmap", NativeSupport.errno(capture));
        }
    }

    private static void munmapQuietly(long address, long lengthBytes) {
        try {
            int rc = (int) MUNMAP_QUIETLY.invokeExact(address, lengthBytes);
            assert rc == 0 : "munmap failed";
        } catch (Throwable t) {
            // an arena cleanup action must not throw; munmap of a range we mapped cannot fail
        }
    }

    /** {@code madvise(2)} over the whole segment, which must start on a page boundary. */
    public static void madvise(MemorySegment seg, int advice) {
        madvise(seg, 0, seg.byteSize(), advice);
    }

    /** {@code madvise(2)} over {@code [offset, offset + lengthBytes)} of {@code seg}; the start must be page-aligned. */
    public static void madvise(MemorySegment seg, long offset, long lengthBytes, int advice) {
        checkRange(seg, offset, lengthBytes);
        MemorySegment capture = NativeSupport.captureState();
        while (true) {
            int rc;
            try {
                rc = (int) MADVISE.invokeExact(capture, seg.address() + offset, lengthBytes, advice);
            } catch (Throwable t) {
                throw NativeSupport.rethrow(t);
            }
            if (rc == 0) {
                return;
            }
            int errno = NativeSupport.errno(capture);
            if (errno != Errno.EINTR && errno != Errno.EAGAIN) {
                throw new ErrnoException("madvise", errno);
            }
        }
    }

    /** {@code msync(2)} of the whole segment ({@link #MS_SYNC} or {@link #MS_ASYNC}, optionally {@link #MS_INVALIDATE}). */
    public static void msync(MemorySegment seg, int flags) {
        checkRange(seg, 0, seg.byteSize());
        MemorySegment capture = NativeSupport.captureState();
        int rc;
        try {
            rc = (int) MSYNC.invokeExact(capture, seg.address(), seg.byteSize(), flags);
        } catch (Throwable t) {
            throw NativeSupport.rethrow(t);
        }
        if (rc < 0) {
            throw new ErrnoException("msync", NativeSupport.errno(capture));
        }
    }

    private static void checkRange(MemorySegment seg, long offset, long lengthBytes) {
        if (!seg.isNative()) {
            throw new IllegalArgumentException("not a native segment: " + seg);
        }
        if (offset < 0 || lengthBytes < 0 || offset > seg.byteSize() - lengthBytes) {
            throw new IndexOutOfBoundsException(
                    "range [" + offset + ", +" + lengthBytes + ") outside segment of " + seg.byteSize() + " bytes");
        }
    }
}
