package io.vhostd.shm.arena;

import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Stat;
import io.vhostd.shm.linux.Unistd;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Shared memory for queue pairs and journals: one memfd, mapped {@code MAP_SHARED}, that the master creates and passes
 * to other processes ({@code SCM_RIGHTS}) which {@link #attach} it.
 *
 * <p>{@link #create} prefers 2 MiB huge pages ({@code memfd_create(MFD_HUGETLB | MFD_HUGE_2MB)}, size rounded up to 2
 * MiB, {@code mmap(MAP_SHARED | MAP_POPULATE)}). Without enough free huge pages the kernel's hugetlb reservation makes
 * {@code mmap} fail with {@code ENOMEM} (measured on kernel 6.18 with {@code vm.nr_hugepages} = 0 and = 1 for a 4 MiB
 * arena: {@code memfd_create} and {@code ftruncate} succeed, {@code mmap} fails, with or without
 * {@code MAP_POPULATE}), so a successful create cannot SIGBUS later; {@code MAP_NORESERVE} is never used. On failure
 * it falls back to a plain memfd (4 KiB pages, size rounded up to 4 KiB, also populated) and says why in
 * {@link #fallbackReason()}.
 *
 * <p>The memfd is sealed against shrinking and growing ({@code F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL}), so a peer
 * that holds the fd cannot truncate the memory under the creator's mapping (which would SIGBUS it).
 *
 * <p>The bump allocator hands out byte offsets into {@link #segment()}; offsets, not addresses, are what processes
 * exchange, since each maps the memfd at its own address.
 */
public final class HugepageArena implements AutoCloseable {
    /** Size of one 2 MiB huge page. */
    public static final long HUGEPAGE_2MB_BYTES = 2L << 20;

    /** Size of a base page on x86_64. */
    public static final long PAGE_BYTES = 4096;

    private static final String FREE_HUGEPAGES_PATH = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages";

    private final int fd;
    private final Arena arena;
    private final MemorySegment segment;
    private final boolean hugepages;
    private final String fallbackReason;
    private long nextFreeOffset;
    private boolean closed;

    private HugepageArena(int fd, Arena arena, MemorySegment segment, boolean hugepages, String fallbackReason) {
        this.fd = fd;
        this.arena = arena;
        this.segment = segment;
        this.hugepages = hugepages;
        this.fallbackReason = fallbackReason;
    }

    /**
     * Creates and maps a new arena.
     *
     * @param name memfd name ({@code /proc/<pid>/fd} shows {@code memfd:<name>})
     * @param sizeBytes requested size, &gt; 0; {@link #sizeBytes()} is this rounded up to the page size used
     * @param preferHugepages try 2 MiB huge pages first
     * @throws ErrnoException if even the plain memfd cannot be created or mapped
     */
    public static HugepageArena create(String name, long sizeBytes, boolean preferHugepages) {
        if (sizeBytes <= 0) {
            throw new IllegalArgumentException("sizeBytes must be > 0: " + sizeBytes);
        }
        String reason;
        if (preferHugepages) {
            long hugeSizeBytes = roundUp(sizeBytes, HUGEPAGE_2MB_BYTES);
            int hugeFd = -1;
            String step = "memfd_create(MFD_HUGETLB | MFD_HUGE_2MB)";
            try {
                hugeFd = Memfd.memfd_create(
                        name, Memfd.MFD_HUGETLB | Memfd.MFD_HUGE_2MB | Memfd.MFD_CLOEXEC | Memfd.MFD_ALLOW_SEALING);
                step = "ftruncate to " + hugeSizeBytes + " bytes";
                Unistd.ftruncate(hugeFd, hugeSizeBytes);
                step = "F_ADD_SEALS";
                seal(hugeFd);
                step = "mmap(MAP_SHARED | MAP_POPULATE) of " + hugeSizeBytes + " bytes";
                return map(hugeFd, hugeSizeBytes, Mman.MAP_SHARED | Mman.MAP_POPULATE, true, null);
            } catch (ErrnoException e) {
                if (hugeFd >= 0) {
                    Unistd.close(hugeFd);
                }
                reason = "2 MiB hugepages unavailable: " + step + " failed with " + e.errnoName() + " ("
                        + freeHugepagesText() + ")";
            }
        } else {
            reason = "hugepages not requested";
        }
        long plainSizeBytes = roundUp(sizeBytes, PAGE_BYTES);
        int plainFd = Memfd.memfd_create(name, Memfd.MFD_CLOEXEC | Memfd.MFD_ALLOW_SEALING);
        try {
            Unistd.ftruncate(plainFd, plainSizeBytes);
            seal(plainFd);
            return map(plainFd, plainSizeBytes, Mman.MAP_SHARED | Mman.MAP_POPULATE, false, reason);
        } catch (RuntimeException e) {
            Unistd.close(plainFd);
            throw e;
        }
    }

    /**
     * Maps an arena received from another process ({@code MAP_SHARED}, not populated). The arena takes ownership of
     * {@code fd} and closes it in {@link #close()}. The fd is untrusted: its real size is checked with {@code fstat}, so
     * a too-small file is rejected here instead of raising SIGBUS on a later access. If this method throws, the caller
     * still owns {@code fd}.
     *
     * @param sizeBytes bytes to map, &gt; 0 and at most the file's size; rounded up to the file's page size
     * @throws IllegalArgumentException if the file is smaller than {@code sizeBytes}
     * @throws ErrnoException if {@code fstat} or {@code mmap} fails
     */
    public static HugepageArena attach(int fd, long sizeBytes) {
        if (sizeBytes <= 0) {
            throw new IllegalArgumentException("sizeBytes must be > 0: " + sizeBytes);
        }
        Stat.FileStat stat = Stat.fstat(fd);
        // hugetlbfs reports its huge page size as st_blksize; mappings must cover whole huge pages
        boolean huge = stat.blockSizeBytes() >= HUGEPAGE_2MB_BYTES;
        long mapBytes = roundUp(sizeBytes, huge ? stat.blockSizeBytes() : PAGE_BYTES);
        if (!stat.isRegularFile() || stat.sizeBytes() < sizeBytes) {
            throw new IllegalArgumentException("arena fd is not a regular file of at least " + sizeBytes
                    + " bytes (mode 0" + Integer.toOctalString(stat.mode()) + ", size " + stat.sizeBytes() + ")");
        }
        if (huge && stat.sizeBytes() < mapBytes) {
            throw new IllegalArgumentException(
                    "hugetlb arena of " + stat.sizeBytes() + " bytes cannot cover " + mapBytes + " bytes");
        }
        return map(fd, mapBytes, Mman.MAP_SHARED, huge, huge ? null : "attached memfd is not hugetlb-backed");
    }

    private static HugepageArena map(int fd, long mapBytes, int flags, boolean huge, String reason) {
        Arena arena = Arena.ofShared();
        try {
            MemorySegment segment = Mman.mmap(mapBytes, Mman.PROT_READ | Mman.PROT_WRITE, flags, fd, 0, arena);
            return new HugepageArena(fd, arena, segment, huge, reason);
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static void seal(int fd) {
        Fcntl.fcntl(fd, Fcntl.F_ADD_SEALS, Fcntl.F_SEAL_SHRINK | Fcntl.F_SEAL_GROW | Fcntl.F_SEAL_SEAL);
    }

    private static String freeHugepagesText() {
        try {
            return "free 2 MiB hugepages: "
                    + Files.readString(Path.of(FREE_HUGEPAGES_PATH)).trim() + ", see vm.nr_hugepages";
        } catch (IOException e) {
            return "no 2 MiB hugepage pool in sysfs";
        }
    }

    private static long roundUp(long value, long granule) {
        long rounded = (value + granule - 1) / granule * granule;
        if (rounded < value) {
            throw new IllegalArgumentException("size too large: " + value);
        }
        return rounded;
    }

    /** The memfd; the arena owns it (dup it to keep it beyond {@link #close()}). */
    public int fd() {
        return fd;
    }

    /** The mapping, {@link #sizeBytes()} long. */
    public MemorySegment segment() {
        return segment;
    }

    /** Mapped size in bytes (the requested size rounded up to the page size). */
    public long sizeBytes() {
        return segment.byteSize();
    }

    /** True if backed by 2 MiB huge pages. */
    public boolean hugepages() {
        return hugepages;
    }

    /** Why huge pages are not used, or null if they are. */
    public String fallbackReason() {
        return fallbackReason;
    }

    /**
     * Bump allocation of {@code sizeBytes} aligned to {@code alignBytes}. Memory is never freed individually.
     *
     * @param alignBytes a power of two
     * @return the byte offset of the block in {@link #segment()}
     * @throws IllegalStateException when the arena has no room left
     */
    public synchronized long allocate(long sizeBytes, long alignBytes) {
        if (sizeBytes <= 0) {
            throw new IllegalArgumentException("sizeBytes must be > 0: " + sizeBytes);
        }
        if (alignBytes <= 0 || Long.bitCount(alignBytes) != 1) {
            throw new IllegalArgumentException("alignBytes must be a power of two: " + alignBytes);
        }
        long offset = (nextFreeOffset + alignBytes - 1) & -alignBytes;
        if (offset < 0 || offset > segment.byteSize() - sizeBytes) {
            throw new IllegalStateException("arena full: " + sizeBytes + " bytes aligned to " + alignBytes
                    + " requested, " + (segment.byteSize() - nextFreeOffset) + " of " + segment.byteSize()
                    + " bytes left");
        }
        nextFreeOffset = offset + sizeBytes;
        return offset;
    }

    /**
     * Marks {@code [offsetBytes, offsetBytes + sizeBytes)} as allocated (an arena attached after a restart, whose
     * blocks another process allocated): {@link #allocate} continues after the highest such block.
     *
     * @throws IllegalArgumentException if the block is not inside the arena
     */
    public synchronized void markAllocated(long offsetBytes, long sizeBytes) {
        if (offsetBytes < 0 || sizeBytes <= 0 || offsetBytes > segment.byteSize() - sizeBytes) {
            throw new IllegalArgumentException("block [" + offsetBytes + ", +" + sizeBytes + ") outside the arena of "
                    + segment.byteSize() + " bytes");
        }
        nextFreeOffset = Math.max(nextFreeOffset, offsetBytes + sizeBytes);
    }

    /** Unmaps the memory and closes the memfd; segments obtained from it become inaccessible. Idempotent. */
    @Override
    public synchronized void close() {
        if (closed) {
            return;
        }
        closed = true;
        arena.close();
        Unistd.close(fd);
    }
}
