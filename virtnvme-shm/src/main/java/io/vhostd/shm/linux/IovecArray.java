package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.Objects;

/**
 * A native {@code struct iovec[capacity]} ({@code <sys/uio.h>}) for {@code readv}/{@code writev} and io_uring
 * {@code IORING_OP_READV}/{@code IORING_OP_WRITEV}. Each entry is 16 bytes: {@code void *iov_base} at 0,
 * {@code size_t iov_len} at 8. The memory belongs to the arena given to the constructor.
 */
public final class IovecArray {
    /** {@code sizeof(struct iovec)} on x86_64. */
    public static final long IOVEC_SIZE = 16;

    public static final long IOV_BASE_OFFSET = 0;
    public static final long IOV_LEN_OFFSET = 8;

    private final MemorySegment segment;
    private final int capacity;

    /**
     * @param arena owner of the native array
     * @param capacity number of entries, &gt; 0 (the kernel accepts at most {@code IOV_MAX} = 1024 per call)
     */
    public IovecArray(Arena arena, int capacity) {
        if (capacity <= 0) {
            throw new IllegalArgumentException("capacity must be > 0: " + capacity);
        }
        this.capacity = capacity;
        this.segment = arena.allocate(IOVEC_SIZE * capacity, 8);
    }

    /** Same as {@link #IovecArray(Arena, int)}, arguments in the other order. */
    public IovecArray(int capacity, Arena arena) {
        this(arena, capacity);
    }

    /** Sets entry {@code i} to {@code lengthBytes} bytes at native {@code address}. */
    public void set(int i, long address, long lengthBytes) {
        Objects.checkIndex(i, capacity);
        if (lengthBytes < 0) {
            throw new IllegalArgumentException("negative length: " + lengthBytes);
        }
        segment.set(JAVA_LONG, i * IOVEC_SIZE + IOV_BASE_OFFSET, address);
        segment.set(JAVA_LONG, i * IOVEC_SIZE + IOV_LEN_OFFSET, lengthBytes);
    }

    /** Sets entry {@code i} to the whole of native segment {@code buffer}. */
    public void set(int i, MemorySegment buffer) {
        if (!buffer.isNative()) {
            throw new IllegalArgumentException("not a native segment: " + buffer);
        }
        set(i, buffer.address(), buffer.byteSize());
    }

    /** The base address of entry {@code i}. */
    public long base(int i) {
        Objects.checkIndex(i, capacity);
        return segment.get(JAVA_LONG, i * IOVEC_SIZE + IOV_BASE_OFFSET);
    }

    /** The length of entry {@code i} in bytes. */
    public long lengthBytes(int i) {
        Objects.checkIndex(i, capacity);
        return segment.get(JAVA_LONG, i * IOVEC_SIZE + IOV_LEN_OFFSET);
    }

    /** The native address of entry 0, as the kernel takes it. */
    public long address() {
        return segment.address();
    }

    /** The number of entries. */
    public int capacity() {
        return capacity;
    }

    /** The native array itself ({@code capacity() * 16} bytes). */
    public MemorySegment segment() {
        return segment;
    }
}
