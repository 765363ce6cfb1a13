package io.vhostd.shm.linux;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Raw io_uring from the UAPI header {@code <linux/io_uring.h>}, without liburing: {@code io_uring_setup(2)}, the mmaps
 * of the SQ ring, the CQ ring (one mapping with {@code IORING_FEAT_SINGLE_MMAP}) and the SQE array,
 * {@code io_uring_enter(2)} and {@code io_uring_register(2)}.
 *
 * <p>Usage: {@code prepXxx} fills the next SQE (false when the SQ is full), {@link #submit()} publishes and submits
 * everything prepared, {@link #reapCompletions} hands every available CQE to a handler. The SQ array is set to the
 * identity mapping once at setup, so SQE {@code i} is always slot {@code i}.
 *
 * <p>Threading: one instance is driven by ONE thread at a time (it may be created on another thread). No method on the
 * data path ({@code prep*}, {@code submit*}, {@code reapCompletions}, {@code sqSpaceLeft}, {@code pendingSubmissions})
 * allocates. SQEs are 64 bytes, CQEs 16 bytes ({@link #IORING_SETUP_SQE128} / {@link #IORING_SETUP_CQE32} widen them;
 * the extra bytes stay zero).
 */
public final class IoUring implements AutoCloseable {
    // io_uring_setup flags
    public static final int IORING_SETUP_IOPOLL = 1;
    public static final int IORING_SETUP_SQPOLL = 1 << 1;
    public static final int IORING_SETUP_SQ_AFF = 1 << 2;
    public static final int IORING_SETUP_CQSIZE = 1 << 3;
    public static final int IORING_SETUP_CLAMP = 1 << 4;
    public static final int IORING_SETUP_ATTACH_WQ = 1 << 5;
    public static final int IORING_SETUP_R_DISABLED = 1 << 6;
    public static final int IORING_SETUP_SUBMIT_ALL = 1 << 7;
    public static final int IORING_SETUP_COOP_TASKRUN = 1 << 8;
    public static final int IORING_SETUP_TASKRUN_FLAG = 1 << 9;
    public static final int IORING_SETUP_SQE128 = 1 << 10;
    public static final int IORING_SETUP_CQE32 = 1 << 11;
    public static final int IORING_SETUP_SINGLE_ISSUER = 1 << 12;
    public static final int IORING_SETUP_DEFER_TASKRUN = 1 << 13;
    public static final int IORING_SETUP_NO_SQARRAY = 1 << 16;

    // opcodes (enum io_uring_op)
    public static final int IORING_OP_NOP = 0;
    public static final int IORING_OP_READV = 1;
    public static final int IORING_OP_WRITEV = 2;
    public static final int IORING_OP_FSYNC = 3;
    public static final int IORING_OP_READ_FIXED = 4;
    public static final int IORING_OP_WRITE_FIXED = 5;
    public static final int IORING_OP_POLL_ADD = 6;
    public static final int IORING_OP_POLL_REMOVE = 7;
    public static final int IORING_OP_SYNC_FILE_RANGE = 8;
    public static final int IORING_OP_SENDMSG = 9;
    public static final int IORING_OP_RECVMSG = 10;
    public static final int IORING_OP_TIMEOUT = 11;
    public static final int IORING_OP_TIMEOUT_REMOVE = 12;
    public static final int IORING_OP_ACCEPT = 13;
    public static final int IORING_OP_ASYNC_CANCEL = 14;
    public static final int IORING_OP_LINK_TIMEOUT = 15;
    public static final int IORING_OP_CONNECT = 16;
    public static final int IORING_OP_FALLOCATE = 17;
    public static final int IORING_OP_OPENAT = 18;
    public static final int IORING_OP_CLOSE = 19;
    public static final int IORING_OP_FILES_UPDATE = 20;
    public static final int IORING_OP_STATX = 21;
    public static final int IORING_OP_READ = 22;
    public static final int IORING_OP_WRITE = 23;
    public static final int IORING_OP_URING_CMD = 46;

    // sqe->flags bit numbers and masks
    public static final int IOSQE_FIXED_FILE_BIT = 0;
    public static final int IOSQE_IO_DRAIN_BIT = 1;
    public static final int IOSQE_IO_LINK_BIT = 2;
    public static final int IOSQE_IO_HARDLINK_BIT = 3;
    public static final int IOSQE_ASYNC_BIT = 4;
    public static final int IOSQE_BUFFER_SELECT_BIT = 5;
    public static final int IOSQE_CQE_SKIP_SUCCESS_BIT = 6;
    public static final int IOSQE_FIXED_FILE = 1 << IOSQE_FIXED_FILE_BIT;
    public static final int IOSQE_IO_DRAIN = 1 << IOSQE_IO_DRAIN_BIT;
    public static final int IOSQE_IO_LINK = 1 << IOSQE_IO_LINK_BIT;
    public static final int IOSQE_IO_HARDLINK = 1 << IOSQE_IO_HARDLINK_BIT;
    public static final int IOSQE_ASYNC = 1 << IOSQE_ASYNC_BIT;
    public static final int IOSQE_BUFFER_SELECT = 1 << IOSQE_BUFFER_SELECT_BIT;
    public static final int IOSQE_CQE_SKIP_SUCCESS = 1 << IOSQE_CQE_SKIP_SUCCESS_BIT;

    /** sqe->fsync_flags: {@code fdatasync} semantics. */
    public static final int IORING_FSYNC_DATASYNC = 1;

    // sqe->cancel_flags of IORING_OP_ASYNC_CANCEL
    public static final int IORING_ASYNC_CANCEL_ALL = 1;
    public static final int IORING_ASYNC_CANCEL_FD = 1 << 1;
    public static final int IORING_ASYNC_CANCEL_ANY = 1 << 2;

    // sq ring flags
    public static final int IORING_SQ_NEED_WAKEUP = 1;
    public static final int IORING_SQ_CQ_OVERFLOW = 1 << 1;
    public static final int IORING_SQ_TASKRUN = 1 << 2;

    // io_uring_enter flags
    public static final int IORING_ENTER_GETEVENTS = 1;
    public static final int IORING_ENTER_SQ_WAKEUP = 1 << 1;
    public static final int IORING_ENTER_SQ_WAIT = 1 << 2;
    public static final int IORING_ENTER_EXT_ARG = 1 << 3;

    // params->features
    public static final int IORING_FEAT_SINGLE_MMAP = 1;
    public static final int IORING_FEAT_NODROP = 1 << 1;
    public static final int IORING_FEAT_SUBMIT_STABLE = 1 << 2;
    public static final int IORING_FEAT_RW_CUR_POS = 1 << 3;
    public static final int IORING_FEAT_FAST_POLL = 1 << 5;
    public static final int IORING_FEAT_EXT_ARG = 1 << 8;
    public static final int IORING_FEAT_NATIVE_WORKERS = 1 << 9;

    // io_uring_register opcodes
    public static final int IORING_REGISTER_BUFFERS = 0;
    public static final int IORING_UNREGISTER_BUFFERS = 1;
    public static final int IORING_REGISTER_FILES = 2;
    public static final int IORING_UNREGISTER_FILES = 3;
    public static final int IORING_REGISTER_EVENTFD = 4;
    public static final int IORING_UNREGISTER_EVENTFD = 5;

    // mmap offsets
    public static final long IORING_OFF_SQ_RING = 0L;
    public static final long IORING_OFF_CQ_RING = 0x8000000L;
    public static final long IORING_OFF_SQES = 0x10000000L;

    /** x86_64 syscall numbers. */
    static final long SYS_IO_URING_SETUP = 425;

    static final long SYS_IO_URING_ENTER = 426;
    static final long SYS_IO_URING_REGISTER = 427;

    /** {@code struct io_uring_sqe}: 64 bytes. */
    static final long SQE_SIZE = 64;

    static final long SQE_OPCODE_OFFSET = 0; // u8
    static final long SQE_FLAGS_OFFSET = 1; // u8
    static final long SQE_IOPRIO_OFFSET = 2; // u16
    static final long SQE_FD_OFFSET = 4; // s32
    static final long SQE_OFF_OFFSET = 8; // u64 off / addr2
    static final long SQE_ADDR_OFFSET = 16; // u64 addr / splice_off_in
    static final long SQE_LEN_OFFSET = 24; // u32
    static final long SQE_OP_FLAGS_OFFSET = 28; // u32 rw_flags / fsync_flags / ...
    static final long SQE_USER_DATA_OFFSET = 32; // u64
    static final long SQE_BUF_INDEX_OFFSET = 40; // u16
    static final long SQE_PERSONALITY_OFFSET = 42; // u16
    static final long SQE_FILE_INDEX_OFFSET = 44; // s32 splice_fd_in / file_index
    static final long SQE_ADDR3_OFFSET = 48; // u64

    /** {@code struct io_uring_cqe}: 16 bytes. */
    static final long CQE_SIZE = 16;

    static final long CQE_USER_DATA_OFFSET = 0; // u64
    static final long CQE_RES_OFFSET = 8; // s32
    static final long CQE_FLAGS_OFFSET = 12; // u32

    /** {@code struct io_uring_params}: 120 bytes, {@code sq_off} at 40 and {@code cq_off} at 80. */
    static final long PARAMS_SIZE = 120;

    static final long PARAMS_SQ_ENTRIES_OFFSET = 0;
    static final long PARAMS_CQ_ENTRIES_OFFSET = 4;
    static final long PARAMS_FLAGS_OFFSET = 8;
    static final long PARAMS_SQ_THREAD_CPU_OFFSET = 12;
    static final long PARAMS_SQ_THREAD_IDLE_OFFSET = 16;
    static final long PARAMS_FEATURES_OFFSET = 20;
    static final long PARAMS_WQ_FD_OFFSET = 24;
    static final long PARAMS_SQ_OFF_OFFSET = 40;
    static final long PARAMS_CQ_OFF_OFFSET = 80;

    /** {@code struct io_sqring_offsets} (40 bytes), relative to its start. */
    static final long SQ_OFF_HEAD = 0;

    static final long SQ_OFF_TAIL = 4;
    static final long SQ_OFF_RING_MASK = 8;
    static final long SQ_OFF_RING_ENTRIES = 12;
    static final long SQ_OFF_FLAGS = 16;
    static final long SQ_OFF_DROPPED = 20;
    static final long SQ_OFF_ARRAY = 24;

    /** {@code struct io_cqring_offsets} (40 bytes), relative to its start. */
    static final long CQ_OFF_HEAD = 0;

    static final long CQ_OFF_TAIL = 4;
    static final long CQ_OFF_RING_MASK = 8;
    static final long CQ_OFF_RING_ENTRIES = 12;
    static final long CQ_OFF_OVERFLOW = 16;
    static final long CQ_OFF_CQES = 20;
    static final long CQ_OFF_FLAGS = 24;

    /**
     * Ring heads and tails are shared with the kernel, which pairs its own {@code smp_load_acquire} /
     * {@code smp_store_release} with ours: acquire on the index the kernel writes (SQ head, CQ tail) so the slots it
     * covers are read after the index; release on the index we write (SQ tail, CQ head) so our SQE writes / CQE reads
     * happen before the kernel can see the index move.
     */
    private static final VarHandle RING_INDEX = ValueLayout.JAVA_INT.varHandle().withInvokeExactBehavior();

    /** Completion callback; {@code res} is the syscall-style result (bytes, or {@code -errno}). */
    @FunctionalInterface
    public interface CompletionHandler {
        void onCompletion(long userData, int res, int flags);
    }

    private final Arena arena;
    private final MemorySegment capture;
    private final int ringFd;
    private final int setupFlags;
    private final int features;
    private final MemorySegment sqRing;
    private final MemorySegment cqRing;
    private final MemorySegment sqes;
    private final long sqHeadOffset;
    private final long sqTailOffset;
    private final long sqFlagsOffset;
    private final long cqHeadOffset;
    private final long cqTailOffset;
    private final long cqesOffset;
    private final int sqEntries;
    private final int sqMask;
    private final int cqEntries;
    private final int cqMask;
    private final long sqeSize;
    private final long cqeSize;

    /** Next SQE slot to fill (unwrapped, like the ring indices). */
    private int sqeTail;
    /** Our copy of the CQ head; we are its only writer. */
    private int cqHead;

    private boolean closed;

    /**
     * {@code io_uring_setup(entries, {flags})} and the ring mappings.
     *
     * @param entries SQ size (the kernel rounds up to a power of two; the CQ is twice as large)
     * @param flags {@code IORING_SETUP_*}
     * @throws ErrnoException e.g. {@code ENOSYS} / {@code EPERM} where io_uring is unavailable or disabled
     */
    public IoUring(int entries, int flags) {
        if (entries <= 0) {
            throw new IllegalArgumentException("entries must be > 0: " + entries);
        }
        Arena owner = Arena.ofShared();
        int fd = -1;
        try {
            MemorySegment captureState = NativeSupport.allocateCaptureState(owner);
            MemorySegment params = owner.allocate(PARAMS_SIZE, 8);
            params.set(JAVA_INT, PARAMS_FLAGS_OFFSET, flags);
            long rc = NativeSupport.syscall(captureState, SYS_IO_URING_SETUP, entries, params.address(), 0, 0, 0, 0);
            if (rc < 0) {
                throw new ErrnoException("io_uring_setup", NativeSupport.errno(captureState));
            }
            fd = (int) rc;

            int sqCount = params.get(JAVA_INT, PARAMS_SQ_ENTRIES_OFFSET);
            int cqCount = params.get(JAVA_INT, PARAMS_CQ_ENTRIES_OFFSET);
            int featureBits = params.get(JAVA_INT, PARAMS_FEATURES_OFFSET);
            long sqOff = PARAMS_SQ_OFF_OFFSET;
            long cqOff = PARAMS_CQ_OFF_OFFSET;
            long sqeBytes = (flags & IORING_SETUP_SQE128) != 0 ? 2 * SQE_SIZE : SQE_SIZE;
            long cqeBytes = (flags & IORING_SETUP_CQE32) != 0 ? 2 * CQE_SIZE : CQE_SIZE;

            long sqArrayOffset = Integer.toUnsignedLong(params.get(JAVA_INT, sqOff + SQ_OFF_ARRAY));
            long sqRingBytes = sqArrayOffset + (long) sqCount * Integer.BYTES;
            long cqesOff = Integer.toUnsignedLong(params.get(JAVA_INT, cqOff + CQ_OFF_CQES));
            long cqRingBytes = cqesOff + cqCount * cqeBytes;
            int prot = Mman.PROT_READ | Mman.PROT_WRITE;
            int mapFlags = Mman.MAP_SHARED | Mman.MAP_POPULATE;
            MemorySegment sq;
            MemorySegment cq;
            if ((featureBits & IORING_FEAT_SINGLE_MMAP) != 0) {
                sq = Mman.mmap(Math.max(sqRingBytes, cqRingBytes), prot, mapFlags, fd, IORING_OFF_SQ_RING, owner);
                cq = sq;
            } else {
                sq = Mman.mmap(sqRingBytes, prot, mapFlags, fd, IORING_OFF_SQ_RING, owner);
                cq = Mman.mmap(cqRingBytes, prot, mapFlags, fd, IORING_OFF_CQ_RING, owner);
            }
            MemorySegment sqeArray = Mman.mmap(sqCount * sqeBytes, prot, mapFlags, fd, IORING_OFF_SQES, owner);

            this.arena = owner;
            this.capture = captureState;
            this.ringFd = fd;
            this.setupFlags = flags;
            this.features = featureBits;
            this.sqRing = sq;
            this.cqRing = cq;
            this.sqes = sqeArray;
            this.sqHeadOffset = Integer.toUnsignedLong(params.get(JAVA_INT, sqOff + SQ_OFF_HEAD));
            this.sqTailOffset = Integer.toUnsignedLong(params.get(JAVA_INT, sqOff + SQ_OFF_TAIL));
            this.sqFlagsOffset = Integer.toUnsignedLong(params.get(JAVA_INT, sqOff + SQ_OFF_FLAGS));
            this.cqHeadOffset = Integer.toUnsignedLong(params.get(JAVA_INT, cqOff + CQ_OFF_HEAD));
            this.cqTailOffset = Integer.toUnsignedLong(params.get(JAVA_INT, cqOff + CQ_OFF_TAIL));
            this.cqesOffset = cqesOff;
            this.sqEntries = sqCount;
            this.sqMask = sq.get(JAVA_INT, Integer.toUnsignedLong(params.get(JAVA_INT, sqOff + SQ_OFF_RING_MASK)));
            this.cqEntries = cqCount;
            this.cqMask = cq.get(JAVA_INT, Integer.toUnsignedLong(params.get(JAVA_INT, cqOff + CQ_OFF_RING_MASK)));
            this.sqeSize = sqeBytes;
            this.cqeSize = cqeBytes;
            if ((flags & IORING_SETUP_NO_SQARRAY) == 0) {
                for (int i = 0; i < sqCount; i++) {
                    sq.set(JAVA_INT, sqArrayOffset + (long) i * Integer.BYTES, i);
                }
            }
            this.sqeTail = (int) RING_INDEX.getAcquire(sq, sqTailOffset);
            this.cqHead = (int) RING_INDEX.getAcquire(cq, cqHeadOffset);
        } catch (RuntimeException | Error e) {
            owner.close();
            if (fd >= 0) {
                Unistd.close(fd);
            }
            throw e;
        }
    }

    /** True if io_uring works here: probed once ({@code /proc/sys/kernel/io_uring_disabled}, then a real setup). */
    public static boolean isAvailable() {
        return Probe.AVAILABLE;
    }

    private static final class Probe {
        static final boolean AVAILABLE = probe();

        private static boolean probe() {
            try {
                String disabled = Files.readString(Path.of("/proc/sys/kernel/io_uring_disabled"))
                        .trim();
                if (disabled.equals("2")) {
                    return false;
                }
            } catch (IOException e) {
                // kernels before 6.6 have no such switch: the setup below decides
            }
            try (IoUring ring = new IoUring(2, 0)) {
                return ring.sqEntries() > 0;
            } catch (ErrnoException | UnsatisfiedLinkError e) {
                return false;
            }
        }
    }

    /** The ring's file descriptor. */
    public int ringFd() {
        return ringFd;
    }

    /** SQ size granted by the kernel. */
    public int sqEntries() {
        return sqEntries;
    }

    /** CQ size granted by the kernel. */
    public int cqEntries() {
        return cqEntries;
    }

    /** {@code IORING_FEAT_*} bits the kernel reported. */
    public int features() {
        return features;
    }

    /** Free SQE slots. */
    public int sqSpaceLeft() {
        return sqEntries - pendingSubmissions();
    }

    /** SQEs prepared but not yet consumed by the kernel. */
    public int pendingSubmissions() {
        return sqeTail - (int) RING_INDEX.getAcquire(sqRing, sqHeadOffset);
    }

    /** Prepares {@code readv} of {@code iovcnt} iovecs at native {@code iovecAddress} from file offset {@code offset}. */
    public boolean prepReadv(int fd, long iovecAddress, int iovcnt, long offset, long userData) {
        return prepRw(IORING_OP_READV, fd, iovecAddress, iovcnt, offset, 0, 0, userData);
    }

    /** Prepares {@code writev} of {@code iovcnt} iovecs at native {@code iovecAddress} to file offset {@code offset}. */
    public boolean prepWritev(int fd, long iovecAddress, int iovcnt, long offset, long userData) {
        return prepRw(IORING_OP_WRITEV, fd, iovecAddress, iovcnt, offset, 0, 0, userData);
    }

    /** Prepares {@code read} of {@code lengthBytes} into native {@code bufAddress}; offset -1 = current position. */
    public boolean prepRead(int fd, long bufAddress, int lengthBytes, long offset, long userData) {
        return prepRw(IORING_OP_READ, fd, bufAddress, lengthBytes, offset, 0, 0, userData);
    }

    /** Prepares {@code write} of {@code lengthBytes} from native {@code bufAddress}; offset -1 = current position. */
    public boolean prepWrite(int fd, long bufAddress, int lengthBytes, long offset, long userData) {
        return prepRw(IORING_OP_WRITE, fd, bufAddress, lengthBytes, offset, 0, 0, userData);
    }

    /** Prepares {@code fsync}; {@code fsyncFlags} 0 or {@link #IORING_FSYNC_DATASYNC}. */
    public boolean prepFsync(int fd, int fsyncFlags, long userData) {
        return prepRw(IORING_OP_FSYNC, fd, 0, 0, 0, fsyncFlags, 0, userData);
    }

    /** Prepares {@code fallocate(fd, mode, offset, len)}. */
    public boolean prepFallocate(int fd, int mode, long offset, long len, long userData) {
        // liburing io_uring_prep_fallocate: mode travels in sqe->len, the length in sqe->addr
        return prepRw(IORING_OP_FALLOCATE, fd, len, mode, offset, 0, 0, userData);
    }

    /**
     * Prepares {@code IORING_OP_ASYNC_CANCEL} of the request submitted with {@code targetUserData} (liburing
     * {@code io_uring_prep_cancel64}: the target's user_data travels in {@code sqe->addr}, the flags in
     * {@code sqe->cancel_flags}). A target still pending completes with {@code -ECANCELED}; this SQE's own CQE carries
     * {@code userData} and res 0 (cancelled), {@code -ENOENT} (no such request: it already completed) or
     * {@code -EALREADY} (it is running and may still complete normally).
     *
     * @param cancelFlags 0 (the first match) or {@code IORING_ASYNC_CANCEL_*}
     */
    public boolean prepCancel(long targetUserData, int cancelFlags, long userData) {
        return prepRw(IORING_OP_ASYNC_CANCEL, -1, targetUserData, 0, 0, cancelFlags, 0, userData);
    }

    /** Prepares a no-op (completes with res 0). */
    public boolean prepNop(long userData) {
        return prepRw(IORING_OP_NOP, -1, 0, 0, 0, 0, 0, userData);
    }

    /**
     * Fills the next SQE with the common read/write layout ({@code io_uring_prep_rw} in liburing).
     *
     * @param opcode {@code IORING_OP_*}
     * @param fd file descriptor, or the registered file index with {@link #IOSQE_FIXED_FILE}
     * @param address {@code sqe->addr}
     * @param length {@code sqe->len}
     * @param offset {@code sqe->off}
     * @param opFlags {@code sqe->rw_flags} / {@code fsync_flags} / ...
     * @param sqeFlags {@code IOSQE_*}
     * @return false if the SQ is full (nothing was written)
     */
    public boolean prepRw(
            int opcode, int fd, long address, int length, long offset, int opFlags, int sqeFlags, long userData) {
        int head = (int) RING_INDEX.getAcquire(sqRing, sqHeadOffset);
        if (sqeTail - head >= sqEntries) {
            return false;
        }
        long sqe = (long) (sqeTail & sqMask) * sqeSize;
        for (long word = 0; word < sqeSize; word += Long.BYTES) {
            sqes.set(JAVA_LONG, sqe + word, 0L);
        }
        sqes.set(JAVA_BYTE, sqe + SQE_OPCODE_OFFSET, (byte) opcode);
        sqes.set(JAVA_BYTE, sqe + SQE_FLAGS_OFFSET, (byte) sqeFlags);
        sqes.set(JAVA_INT, sqe + SQE_FD_OFFSET, fd);
        sqes.set(JAVA_LONG, sqe + SQE_OFF_OFFSET, offset);
        sqes.set(JAVA_LONG, sqe + SQE_ADDR_OFFSET, address);
        sqes.set(JAVA_INT, sqe + SQE_LEN_OFFSET, length);
        sqes.set(JAVA_INT, sqe + SQE_OP_FLAGS_OFFSET, opFlags);
        sqes.set(JAVA_LONG, sqe + SQE_USER_DATA_OFFSET, userData);
        sqeTail++;
        return true;
    }

    /** Submits everything prepared without waiting; returns the number the kernel took (0 on EINTR). */
    public int submit() {
        return submitAndWait(0);
    }

    /**
     * Publishes the prepared SQEs and calls {@code io_uring_enter(fd, pending, minComplete, minComplete > 0 ?
     * IORING_ENTER_GETEVENTS : 0)}. No system call is made when nothing is pending and nothing is awaited (or, with
     * SQPOLL, when the poller thread is awake).
     *
     * @return SQEs submitted; 0 on {@code EINTR}, {@code EAGAIN} or {@code EBUSY} (reap completions and call again)
     * @throws ErrnoException for any other error
     */
    public int submitAndWait(int minComplete) {
        // release: the kernel loads the tail with acquire and must then see every SQE field written above
        RING_INDEX.setRelease(sqRing, sqTailOffset, sqeTail);
        int toSubmit = pendingSubmissions();
        int enterFlags = minComplete > 0 ? IORING_ENTER_GETEVENTS : 0;
        if ((setupFlags & IORING_SETUP_SQPOLL) != 0) {
            // the tail store must be visible before we read NEED_WAKEUP, or the poller may sleep past our SQEs
            VarHandle.fullFence();
            if ((sqRing.get(JAVA_INT, sqFlagsOffset) & IORING_SQ_NEED_WAKEUP) != 0) {
                enterFlags |= IORING_ENTER_SQ_WAKEUP;
            } else if (minComplete == 0) {
                return toSubmit;
            }
        } else if (toSubmit == 0 && minComplete == 0) {
            if ((sqRing.get(JAVA_INT, sqFlagsOffset) & (IORING_SQ_CQ_OVERFLOW | IORING_SQ_TASKRUN)) == 0) {
                return 0;
            }
            // overflowed CQEs or deferred task work are flushed only by an enter with GETEVENTS
            enterFlags |= IORING_ENTER_GETEVENTS;
        }
        long rc = NativeSupport.syscall(capture, SYS_IO_URING_ENTER, ringFd, toSubmit, minComplete, enterFlags, 0L, 0L);
        if (rc >= 0) {
            return (int) rc;
        }
        int errno = NativeSupport.errno(capture);
        if (errno == Errno.EINTR || errno == Errno.EAGAIN || errno == Errno.EBUSY) {
            return 0;
        }
        throw new ErrnoException("io_uring_enter", errno);
    }

    /**
     * Hands every CQE available now to {@code handler} in ring order and returns how many. A CQE counts as consumed
     * once handed over, even if the handler throws.
     */
    public int reapCompletions(CompletionHandler handler) {
        // acquire: the kernel fills a CQE before it publishes the tail with release
        int tail = (int) RING_INDEX.getAcquire(cqRing, cqTailOffset);
        int head = cqHead;
        int count = 0;
        try {
            while (head != tail) {
                long cqe = cqesOffset + (long) (head & cqMask) * cqeSize;
                long userData = cqRing.get(JAVA_LONG, cqe + CQE_USER_DATA_OFFSET);
                int res = cqRing.get(JAVA_INT, cqe + CQE_RES_OFFSET);
                int flags = cqRing.get(JAVA_INT, cqe + CQE_FLAGS_OFFSET);
                head++;
                count++;
                handler.onCompletion(userData, res, flags);
            }
        } finally {
            cqHead = head;
            // release: our reads of the CQEs happen before the kernel may overwrite their slots
            RING_INDEX.setRelease(cqRing, cqHeadOffset, head);
        }
        return count;
    }

    /** {@code IORING_REGISTER_FILES}: afterwards SQEs with {@link #IOSQE_FIXED_FILE} name files by index. */
    public void registerFiles(int[] fds) {
        try (Arena scratch = Arena.ofConfined()) {
            MemorySegment array = scratch.allocate(JAVA_INT, Math.max(fds.length, 1));
            MemorySegment.copy(fds, 0, array, JAVA_INT, 0, fds.length);
            register(IORING_REGISTER_FILES, array.address(), fds.length, "io_uring_register FILES");
        }
    }

    /** {@code IORING_UNREGISTER_FILES}. */
    public void unregisterFiles() {
        register(IORING_UNREGISTER_FILES, 0, 0, "io_uring_register UNREGISTER_FILES");
    }

    /** {@code IORING_REGISTER_EVENTFD}: the kernel signals {@code eventFd} on every posted CQE. */
    public void registerEventfd(int eventFd) {
        try (Arena scratch = Arena.ofConfined()) {
            MemorySegment fd = scratch.allocateFrom(JAVA_INT, eventFd);
            register(IORING_REGISTER_EVENTFD, fd.address(), 1, "io_uring_register EVENTFD");
        }
    }

    private void register(int opcode, long argAddress, int nrArgs, String call) {
        while (true) {
            long rc = NativeSupport.syscall(capture, SYS_IO_URING_REGISTER, ringFd, opcode, argAddress, nrArgs, 0, 0);
            if (rc >= 0) {
                return;
            }
            int errno = NativeSupport.errno(capture);
            if (errno != Errno.EINTR) {
                throw new ErrnoException(call, errno);
            }
        }
    }

    /** Unmaps the rings and closes the ring fd (the kernel cancels or finishes what is in flight). Idempotent. */
    @Override
    public void close() {
        if (closed) {
            return;
        }
        closed = true;
        arena.close();
        Unistd.close(ringFd);
    }
}
