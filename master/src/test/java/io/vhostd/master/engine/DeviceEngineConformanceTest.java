package io.vhostd.master.engine;

import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_DATASET_MANAGEMENT;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_FLUSH;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_READ;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_WRITE;
import static io.vhostd.shm.virtnvme.VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.master.bdev.FileBdevs;
import io.vhostd.master.bdev.MemoryBdevs;
import io.vhostd.master.config.BdevConfig;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletionException;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Conformance suite of {@link DeviceEngine}: every test runs against every engine on every bdev type it serves ({@link
 * IoUringEngine} and {@link ThreadPoolEngine} on a file, a file with an {@code O_DIRECT} fd and a block device (a loop
 * device; skipped where {@code losetup} cannot make one), {@link MemoryEngine} on a {@code malloc} and a {@code null}
 * bdev) with the same expectations, except that a {@code null} bdev stores nothing. The set-up is the master's: guest
 * memory in a memfd that the {@link RegionTable} maps itself, and VirtNvme queue pairs in memfds mapped twice (the
 * engine's executor view and this test's submitter view, as in two processes), with real eventfds in both directions.
 * The test waits for completions by blocking in poll(2) on the completion eventfd, with a deadline.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class DeviceEngineConformanceTest {
    private static final long BDEV_BYTES = 4L << 20;
    private static final long GUEST_BYTES = 4L << 20;
    /** The region starts this far into its memfd (the vhost-user {@code mmap_offset} convention). */
    private static final long GUEST_MMAP_OFFSET = 64 * 1024;

    private static final int REGION_ID = 3;
    private static final int NSID = 1;
    private static final int DEPTH = 64;
    private static final int MAX_SEGMENTS = 64;
    private static final long DEADLINE_NS = TimeUnit.SECONDS.toNanos(10);
    private static final int RW = Mman.PROT_READ | Mman.PROT_WRITE;
    private static final ValueLayout.OfShort U16_LE = ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** The engine implementations. */
    enum Engine {
        IO_URING("io_uring") {
            @Override
            DeviceEngine create(Bdev bdev) {
                return new IoUringEngine(bdev, MAX_SEGMENTS);
            }
        },
        THREAD_POOL("thread-pool") {
            @Override
            DeviceEngine create(Bdev bdev) {
                return new ThreadPoolEngine(bdev, MAX_SEGMENTS);
            }
        },
        MEMORY("memory") {
            @Override
            DeviceEngine create(Bdev bdev) {
                return new MemoryEngine(bdev, MAX_SEGMENTS);
            }
        };

        final String kindName;

        Engine(String kindName) {
            this.kindName = kindName;
        }

        abstract DeviceEngine create(Bdev bdev);
    }

    /** What backs the bdev. */
    enum Backing {
        FILE,
        /** A file with an O_DIRECT fd and 4096-byte blocks: 4 KiB-aligned I/O goes direct, the rest buffered. */
        FILE_DIRECT,
        /** A loop device over a file, O_DIRECT fd, 4096-byte blocks. */
        BLOCK,
        MALLOC,
        NULL
    }

    /** The (engine, backing) pairs the master uses. */
    enum Kind {
        IO_URING_FILE(Engine.IO_URING, Backing.FILE),
        THREAD_POOL_FILE(Engine.THREAD_POOL, Backing.FILE),
        IO_URING_FILE_DIRECT(Engine.IO_URING, Backing.FILE_DIRECT),
        THREAD_POOL_FILE_DIRECT(Engine.THREAD_POOL, Backing.FILE_DIRECT),
        IO_URING_BLOCK(Engine.IO_URING, Backing.BLOCK),
        THREAD_POOL_BLOCK(Engine.THREAD_POOL, Backing.BLOCK),
        MEMORY_MALLOC(Engine.MEMORY, Backing.MALLOC),
        MEMORY_NULL(Engine.MEMORY, Backing.NULL);

        final Engine engine;
        final Backing backing;

        Kind(Engine engine, Backing backing) {
            this.engine = engine;
            this.backing = backing;
        }

        /** False for the null bdev: writes are dropped, reads return zeroes. */
        boolean stores() {
            return backing != Backing.NULL;
        }

        boolean hasFd() {
            return backing == Backing.FILE || backing == Backing.FILE_DIRECT || backing == Backing.BLOCK;
        }
    }

    /** One data segment in the guest region. */
    record Seg(long regionOffset, int lengthBytes) {}

    /** One consumed CQE. */
    record Completion(int cid, int statusField, int result) {}

    @TempDir
    Path dir;

    private final Arena arena = Arena.ofShared();
    private final List<Queue> queues = new ArrayList<>();
    private Bdev bdev;
    private Kind kind;
    /** The loop device of a BLOCK backing, detached in tearDown. */
    private String loopDevice;

    private RegionTable regions;
    private int guestFd = -1;
    /** The guest region as this test sees it: byte 0 is region offset 0. */
    private MemorySegment guest;

    private DeviceEngine engine;

    /** A queue pair: the engine's binding and the slave's side, driven by this test. */
    private final class Queue {
        final int memfd;
        final VirtNvmeQueuePair submitter;
        final MemorySegment submitterMemory;
        final int sqEventFd;
        final int cqEventFd;
        final QpairBinding binding;
        final Map<Integer, Completion> completions = new HashMap<>();

        Queue(int qpairId) {
            long lengthBytes = VirtNvmeDescriptor.lengthBytes(DEPTH, MAX_SEGMENTS);
            memfd = Memfd.memfd_create("qpair-" + qpairId, Memfd.MFD_CLOEXEC);
            Unistd.ftruncate(memfd, lengthBytes);
            // two mappings of one memfd: the engine's and the submitter's, as in the master and the slave
            MemorySegment executorMemory = Mman.mmap(lengthBytes, RW, Mman.MAP_SHARED, memfd, 0, arena);
            submitterMemory = Mman.mmap(lengthBytes, RW, Mman.MAP_SHARED, memfd, 0, arena);
            VirtNvmeQueuePair executor = VirtNvmeQueuePair.format(executorMemory, qpairId, DEPTH, MAX_SEGMENTS);
            submitter = VirtNvmeQueuePair.attach(submitterMemory);
            sqEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
            cqEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
            binding = new QpairBinding(executor, sqEventFd, cqEventFd, regions, NSID);
        }

        /** Writes one SQE without publishing it. */
        void write(int cid, int opcode, long offsetBytes, int lengthBytes, Seg... segs) {
            write(cid, opcode, 0, offsetBytes, lengthBytes, segs);
        }

        /** Writes one SQE with {@code flags} without publishing it. */
        void write(int cid, int opcode, int flags, long offsetBytes, int lengthBytes, Seg... segs) {
            int[] regionIds = new int[segs.length];
            long[] regionOffsets = new long[segs.length];
            int[] lengths = new int[segs.length];
            for (int i = 0; i < segs.length; i++) {
                regionIds[i] = REGION_ID;
                regionOffsets[i] = segs[i].regionOffset();
                lengths[i] = segs[i].lengthBytes();
            }
            assertTrue(
                    submitter.submit(
                            opcode,
                            flags,
                            cid,
                            NSID,
                            offsetBytes,
                            lengthBytes,
                            segs.length,
                            regionIds,
                            regionOffsets,
                            lengths),
                    "SQ full");
        }

        /** Publishes the SQEs written so far; writes the submission eventfd if the engine asked to be woken. */
        boolean publish() {
            boolean wake = submitter.publishSubmissions();
            if (wake) {
                Eventfd.eventfd_write(sqEventFd, 1);
            }
            return wake;
        }

        Completion submitAndAwait(int cid, int opcode, long offsetBytes, int lengthBytes, Seg... segs) {
            write(cid, opcode, offsetBytes, lengthBytes, segs);
            publish();
            return await(cid);
        }

        /** Consumes the CQEs already posted, without waiting; returns how many. */
        int drain() {
            return submitter.pollCompletions(
                    (cid, statusField, result) -> completions.put(cid, new Completion(cid, statusField, result)));
        }

        /** Waits for the completion of {@code cid}: poll the CQ, else arm the wake-up and block on the eventfd. */
        Completion await(int cid) {
            long deadline = System.nanoTime() + DEADLINE_NS;
            while (true) {
                Completion c = completions.remove(cid);
                if (c != null) {
                    return c;
                }
                if (drain() > 0 || submitter.armCompletionWakeup()) {
                    continue;
                }
                long leftMs = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
                if (leftMs <= 0) {
                    fail("no completion for cid " + cid + " within the deadline");
                }
                if ((Poll.poll(cqEventFd, Poll.POLLIN, (int) leftMs) & Poll.POLLIN) != 0) {
                    Eventfd.eventfd_read(cqEventFd);
                }
            }
        }

        void close() {
            Unistd.close(sqEventFd);
            Unistd.close(cqEventFd);
            Unistd.close(memfd);
        }
    }

    private void start(Kind kind) throws IOException {
        start(kind, Fcntl.O_RDWR);
    }

    /**
     * @param accessMode the access mode the bdev's fds are opened with although the bdev is not read-only: {@code
     *     O_RDWR}, {@code O_RDONLY} (every write fails, EBADF) or {@code O_WRONLY} (every read fails, EBADF)
     */
    private void start(Kind kind, int accessMode) throws IOException {
        this.kind = kind;
        bdev = openBdev(kind.backing, false);
        if (accessMode != Fcntl.O_RDWR) {
            Bdev writable = bdev;
            int failingFd = Fcntl.open(writable.path(), accessMode | Fcntl.O_CLOEXEC, 0);
            int failingDirectFd = writable.directFd() < 0
                    ? -1
                    : Fcntl.open(writable.path(), accessMode | Fcntl.O_CLOEXEC | Fcntl.O_DIRECT, 0);
            bdev = new Bdev(
                    writable.name(),
                    writable.type(),
                    writable.path(),
                    failingFd,
                    failingDirectFd,
                    BDEV_BYTES,
                    writable.blockSizeBytes(),
                    false,
                    writable.blockDevice(),
                    null,
                    null,
                    null);
            writable.close();
        }
        mapGuest();
        engine = kind.engine.create(bdev);
        assertEquals(kind.engine.kindName, engine.kind());
    }

    /** Guest memory in a memfd, and the region table that maps its own copy of the fd (as the master does). */
    private void mapGuest() {
        regions = new RegionTable();
        guestFd = Memfd.memfd_create("guest", Memfd.MFD_CLOEXEC);
        Unistd.ftruncate(guestFd, GUEST_MMAP_OFFSET + GUEST_BYTES);
        guest = Mman.mmap(GUEST_BYTES, RW, Mman.MAP_SHARED, guestFd, GUEST_MMAP_OFFSET, arena);
        regions.register(REGION_ID, Unistd.dup(guestFd), GUEST_BYTES, GUEST_MMAP_OFFSET);
    }

    private Bdev openBdev(Backing backing, boolean readOnly) throws IOException {
        return switch (backing) {
            case FILE ->
                FileBdevs.open("conformance", dir.resolve("bdev.img").toString(), BDEV_BYTES, 512, readOnly, false);
            case FILE_DIRECT -> {
                Bdev b = FileBdevs.open(
                        "conformance", dir.resolve("bdev.img").toString(), BDEV_BYTES, 4096, readOnly, true);
                assertTrue(b.direct(), "the temp directory's file system takes O_DIRECT");
                yield b;
            }
            case BLOCK -> {
                loopDevice = attachLoopDevice(dir.resolve("loop.img"));
                assumeTrue(loopDevice != null, "losetup cannot make a loop device here");
                Bdev b = FileBdevs.open("conformance", loopDevice, 0, 4096, readOnly, true);
                assertTrue(b.blockDevice());
                assertEquals(BdevConfig.TYPE_BLOCK, b.type());
                assertEquals(BDEV_BYTES, b.sizeBytes(), "BLKGETSIZE64");
                yield b;
            }
            case MALLOC -> MemoryBdevs.createMalloc("conformance", BDEV_BYTES, 512, readOnly);
            case NULL -> MemoryBdevs.createNull("conformance", BDEV_BYTES, 512, readOnly);
        };
    }

    /** {@code losetup -f --show image} over a new zero-filled image; null where that fails (no root, no loop). */
    static String attachLoopDevice(Path image) throws IOException {
        try (RandomAccessFile f = new RandomAccessFile(image.toFile(), "rw")) {
            f.setLength(BDEV_BYTES);
        }
        try {
            Process p = new ProcessBuilder("losetup", "-f", "--show", image.toString())
                    .redirectErrorStream(true)
                    .start();
            String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).strip();
            if (!p.waitFor(10, TimeUnit.SECONDS) || p.exitValue() != 0 || !out.startsWith("/dev/loop")) {
                return null;
            }
            return out;
        } catch (IOException e) {
            return null;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return null;
        }
    }

    static void detachLoopDevice(String device) {
        try {
            new ProcessBuilder("losetup", "-d", device).inheritIO().start().waitFor(10, TimeUnit.SECONDS);
        } catch (IOException e) {
            throw new java.io.UncheckedIOException(e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    private Queue attachQueue(int qpairId) {
        Queue q = new Queue(qpairId);
        queues.add(q);
        engine.attach(q.binding);
        return q;
    }

    @AfterEach
    void tearDown() {
        if (engine != null) {
            engine.close();
        }
        queues.forEach(Queue::close);
        if (regions != null) {
            regions.close();
        }
        if (bdev != null) {
            bdev.close();
        }
        if (loopDevice != null) {
            detachLoopDevice(loopDevice);
        }
        if (guestFd >= 0) {
            Unistd.close(guestFd);
        }
        arena.close();
    }

    private static byte[] pattern(int lengthBytes, long seed) {
        byte[] bytes = new byte[lengthBytes];
        new Random(seed).nextBytes(bytes);
        return bytes;
    }

    /** {@code count} segments from {@code regionOffset}, of 512..4096 bytes, with a 512-byte gap after each. */
    private static Seg[] scattered(long regionOffset, int count) {
        Seg[] segs = new Seg[count];
        long at = regionOffset;
        for (int i = 0; i < count; i++) {
            int length = 512 * (1 + i % 8);
            segs[i] = new Seg(at, length);
            at += length + 512;
        }
        return segs;
    }

    private static int totalBytes(Seg... segs) {
        int total = 0;
        for (Seg s : segs) {
            total += s.lengthBytes();
        }
        return total;
    }

    /** Copies {@code bytes} into the segments, in order. */
    private void scatter(byte[] bytes, Seg... segs) {
        int at = 0;
        for (Seg s : segs) {
            MemorySegment.copy(bytes, at, guest, ValueLayout.JAVA_BYTE, s.regionOffset(), s.lengthBytes());
            at += s.lengthBytes();
        }
    }

    /** The bytes of the segments, in order. */
    private byte[] gather(Seg... segs) {
        byte[] bytes = new byte[totalBytes(segs)];
        int at = 0;
        for (Seg s : segs) {
            MemorySegment.copy(guest, ValueLayout.JAVA_BYTE, s.regionOffset(), bytes, at, s.lengthBytes());
            at += s.lengthBytes();
        }
        return bytes;
    }

    /** What the bdev holds, read behind the engine's back (the file or device, the RAM; zeroes for null). */
    private byte[] bdevBytes(long offsetBytes, int lengthBytes) throws IOException {
        byte[] bytes = new byte[lengthBytes];
        switch (kind.backing) {
            case FILE, FILE_DIRECT, BLOCK -> {
                try (RandomAccessFile file = new RandomAccessFile(bdev.path(), "r")) {
                    file.seek(offsetBytes);
                    file.readFully(bytes);
                }
            }
            case MALLOC -> MemorySegment.copy(bdev.memory(), ValueLayout.JAVA_BYTE, offsetBytes, bytes, 0, lengthBytes);
            case NULL -> {
                // nothing stored: zeroes
            }
        }
        return bytes;
    }

    /** What reading back {@code written} returns on this bdev: the data, or zeroes from a null bdev. */
    private byte[] stored(byte[] written) {
        return kind.stores() ? written : new byte[written.length];
    }

    /** WRITE, WRITE_ZEROES and DATASET_MANAGEMENT (CIDs 0..2) answer WRITE_FAULT; a READ (CID 3) succeeds. */
    private static void assertWritesFailAndReadSucceeds(Queue q, Seg seg) {
        assertStatus(VirtNvmeStatus.WRITE_FAULT, q.submitAndAwait(0, NVME_OPC_WRITE, 0, 4096, seg));
        assertStatus(VirtNvmeStatus.WRITE_FAULT, q.submitAndAwait(1, NVME_OPC_WRITE_ZEROES, 0, 4096));
        assertStatus(VirtNvmeStatus.WRITE_FAULT, q.submitAndAwait(2, NVME_OPC_DATASET_MANAGEMENT, 0, 4096));
        assertSuccess(q.submitAndAwait(3, NVME_OPC_READ, 0, 4096, seg), 4096);
    }

    private static void assertSuccess(Completion c, int expectedResult) {
        assertEquals(
                VirtNvmeStatus.name(VirtNvmeStatus.SUCCESS), VirtNvmeStatus.name(c.statusField()), "cid " + c.cid());
        assertEquals(expectedResult, c.result(), "result (bytes transferred) of cid " + c.cid());
    }

    private static void assertStatus(int expected, Completion c) {
        assertEquals(VirtNvmeStatus.name(expected), VirtNvmeStatus.name(c.statusField()), "cid " + c.cid());
        assertEquals(0, c.result(), "result of a failed command");
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldReadBackPatternWhenWrittenWithOneTwoAndFortySegments(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        int cid = 0;
        for (int count : new int[] {1, 2, 40}) {
            Seg[] source = scattered(0, count);
            Seg[] target = scattered(2L << 20, count);
            int length = totalBytes(source);
            long offset = (long) count << 16;
            byte[] data = pattern(length, count);
            scatter(data, source);

            assertSuccess(q.submitAndAwait(cid++, NVME_OPC_WRITE, offset, length, source), length);
            assertArrayEquals(stored(data), bdevBytes(offset, length), count + " segments: the bdev holds the data");

            scatter(pattern(length, 99), target);
            assertSuccess(q.submitAndAwait(cid++, NVME_OPC_READ, offset, length, target), length);
            assertArrayEquals(stored(data), gather(target), count + " segments: read back into other buffers");
        }
        assertEquals(6, engine.commandsCompleted());
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldSucceedWhenFlushAfterWrite(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        Seg seg = new Seg(0, 8192);
        scatter(pattern(8192, 7), seg);
        assertSuccess(q.submitAndAwait(0, NVME_OPC_WRITE, 0, 8192, seg), 8192);

        assertSuccess(q.submitAndAwait(1, NVME_OPC_FLUSH, 0, 0), 0);
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldReadZeroesWhenRangeWrittenWithWriteZeroes(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        long offset = 1L << 20;
        int length = 64 * 1024;
        byte[] data = pattern(length, 13);
        Seg source = new Seg(0, length);
        Seg target = new Seg(1L << 20, length);
        scatter(data, source);
        assertSuccess(q.submitAndAwait(0, NVME_OPC_WRITE, offset, length, source), length);

        assertSuccess(q.submitAndAwait(1, NVME_OPC_WRITE_ZEROES, offset + 16 * 1024, 32 * 1024), 0);

        assertSuccess(q.submitAndAwait(2, NVME_OPC_READ, offset, length, target), length);
        byte[] expected = stored(data).clone();
        Arrays.fill(expected, 16 * 1024, 48 * 1024, (byte) 0);
        assertArrayEquals(expected, gather(target), "zeroes inside the range, the data around it");
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldReadZeroesAndFreeBlocksWhenWriteZeroesMayDeallocate(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        int length = 1 << 20;
        byte[] data = pattern(length, 19);
        Seg source = new Seg(0, length);
        Seg target = new Seg(1L << 20, length);
        scatter(data, source);
        assertSuccess(q.submitAndAwait(0, NVME_OPC_WRITE, 0, length, source), length);
        assertSuccess(q.submitAndAwait(1, NVME_OPC_FLUSH, 0, 0), 0);
        boolean file = kind.backing == Backing.FILE || kind.backing == Backing.FILE_DIRECT;
        long blocksBefore = file ? allocatedBlocks() : 0;

        q.write(2, NVME_OPC_WRITE_ZEROES, VirtNvmeDescriptor.SQE_FLAG_DEALLOCATE_MASK, 0, length / 2);
        q.publish();
        assertSuccess(q.await(2), 0);

        assertSuccess(q.submitAndAwait(3, NVME_OPC_READ, 0, length, target), length);
        byte[] expected = stored(data).clone();
        Arrays.fill(expected, 0, length / 2, (byte) 0);
        assertArrayEquals(expected, gather(target), "zeroes in the deallocated half, the data after it");
        if (file) {
            // a punched hole: the image holds at least 256 KiB less (ZERO_RANGE would keep the blocks allocated)
            long freed = blocksBefore - allocatedBlocks();
            assertTrue(freed * 512 >= 256 * 1024, "blocks freed: " + freed + " of 512 bytes");
        }
    }

    /** {@code st_blocks} of the file bdev's image, in 512-byte units (stat(1): the JDK does not expose it). */
    private long allocatedBlocks() throws IOException {
        Process p = new ProcessBuilder("stat", "--format=%b", bdev.path())
                .redirectErrorStream(true)
                .start();
        String out = new String(p.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.US_ASCII).trim();
        try {
            if (p.waitFor() != 0) {
                fail("stat " + bdev.path() + ": " + out);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException(e);
        }
        return Long.parseLong(out);
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldReadZeroesWhenRangeDiscarded(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        int length = 64 * 1024;
        byte[] data = pattern(length, 17);
        Seg source = new Seg(0, length);
        Seg target = new Seg(1L << 20, length);
        scatter(data, source);
        assertSuccess(q.submitAndAwait(0, NVME_OPC_WRITE, 0, length, source), length);

        assertSuccess(q.submitAndAwait(1, NVME_OPC_DATASET_MANAGEMENT, 0, 32 * 1024), 0);

        // a file punches a hole and malloc zeroes: both read back zeroes; a block device need not in general, the loop
        // device punches a hole in its image
        assertSuccess(q.submitAndAwait(2, NVME_OPC_READ, 0, length, target), length);
        byte[] expected = stored(data).clone();
        Arrays.fill(expected, 0, 32 * 1024, (byte) 0);
        assertArrayEquals(expected, gather(target));
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldAnswerErrorsAndKeepServingWhenCommandsAreBad(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        Seg seg = new Seg(0, 4096);
        byte[] data = pattern(4096, 21);
        scatter(data, seg);
        // one batch: bad commands between good ones
        q.write(0, NVME_OPC_READ, BDEV_BYTES, 512, new Seg(0, 512));
        q.write(1, 0x7F, 0, 512, new Seg(0, 512));
        q.write(2, NVME_OPC_WRITE, 0, 4096, seg);
        int slot = q.submitter.sqTailIndex() & (DEPTH - 1);
        q.write(3, NVME_OPC_WRITE, 0, 1024, new Seg(0, 512), new Seg(512, 512));
        // a faulty slave rewrites the inline SQE to claim 3 segments without the indirect flag: this used to end the
        // engine thread (the segment accessor threw out of the engine's loop)
        q.submitterMemory.set(
                U16_LE, VirtNvmeDescriptor.sqeOffset(slot) + VirtNvmeDescriptor.SQE_SEGMENT_COUNT_OFFSET, (short) 3);
        q.write(4, NVME_OPC_WRITE, BDEV_BYTES - 512, 1024, new Seg(0, 1024));
        q.write(5, NVME_OPC_READ, 0, 1024, new Seg(-512L, 1024));
        q.publish();

        assertStatus(VirtNvmeStatus.LBA_OUT_OF_RANGE, q.await(0));
        assertStatus(VirtNvmeStatus.INVALID_OPCODE, q.await(1));
        assertSuccess(q.await(2), 4096);
        assertStatus(VirtNvmeStatus.INVALID_FIELD, q.await(3));
        assertStatus(VirtNvmeStatus.LBA_OUT_OF_RANGE, q.await(4));
        assertStatus(VirtNvmeStatus.INVALID_FIELD, q.await(5));

        // and the engine still serves the next command
        Seg target = new Seg(1L << 20, 4096);
        assertSuccess(q.submitAndAwait(6, NVME_OPC_READ, 0, 4096, target), 4096);
        assertArrayEquals(stored(data), gather(target));
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldAnswerWriteFaultAndKeepServingWhenDeviceFailsWrite(Kind kind) throws IOException {
        assumeTrue(kind.hasFd(), "only a device can fail a write");
        start(kind, Fcntl.O_RDONLY);
        Queue q = attachQueue(1);
        Seg seg = new Seg(0, 4096);

        // spec §7.1: a write the device failed is WRITE_FAULT, so are write-zeroes and discard
        assertWritesFailAndReadSucceeds(q, seg);
        assertEquals(3, engine.deviceErrors());
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldAnswerUnrecoveredReadErrorAndKeepServingWhenDeviceFailsRead(Kind kind) throws IOException {
        assumeTrue(kind.hasFd(), "only a device can fail a read");
        start(kind, Fcntl.O_WRONLY);
        Queue q = attachQueue(1);
        Seg seg = new Seg(0, 4096);
        scatter(pattern(4096, 23), seg);

        // spec §7.1: a read the device failed is UNRECOVERED_READ_ERROR
        assertStatus(VirtNvmeStatus.UNRECOVERED_READ_ERROR, q.submitAndAwait(0, NVME_OPC_READ, 0, 4096, seg));

        assertSuccess(q.submitAndAwait(1, NVME_OPC_WRITE, 0, 4096, seg), 4096);
        assertEquals(1, engine.deviceErrors());
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldServeBothQueuePairsWhenTwoAreAttached(Kind kind) throws IOException {
        start(kind);
        Queue a = attachQueue(1);
        Queue b = attachQueue(2);
        int length = 16 * 1024;
        byte[] dataA = pattern(length, 31);
        byte[] dataB = pattern(length, 32);
        Seg sourceA = new Seg(0, length);
        Seg sourceB = new Seg(64 * 1024, length);
        scatter(dataA, sourceA);
        scatter(dataB, sourceB);
        for (int i = 0; i < 8; i++) {
            a.write(i, NVME_OPC_WRITE, (long) i * length, length, sourceA);
            b.write(i, NVME_OPC_WRITE, (8L + i) * length, length, sourceB);
        }
        a.publish();
        b.publish();
        for (int i = 0; i < 8; i++) {
            assertSuccess(a.await(i), length);
            assertSuccess(b.await(i), length);
        }

        // each queue pair reads what the other one wrote: one bdev behind both
        Seg targetA = new Seg(1L << 20, length);
        Seg targetB = new Seg(2L << 20, length);
        assertSuccess(a.submitAndAwait(8, NVME_OPC_READ, 8L * length, length, targetA), length);
        assertSuccess(b.submitAndAwait(8, NVME_OPC_READ, 0, length, targetB), length);
        assertArrayEquals(stored(dataB), gather(targetA));
        assertArrayEquals(stored(dataA), gather(targetB));
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldSeeEveryWriteWhenAlignedAndUnalignedCommandsMix(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        int length = 16 * 1024;
        byte[] data = pattern(length, 51);
        Seg aligned = new Seg(0, length);
        scatter(data, aligned);
        // 4 KiB-aligned: the O_DIRECT fd where there is one
        assertSuccess(q.submitAndAwait(0, NVME_OPC_WRITE, 64 * 1024, length, aligned), length);
        // 512-byte granular, not 4 KiB: the buffered fd; its buffer is off a 4 KiB boundary too
        byte[] patch = pattern(1536, 52);
        Seg unaligned = new Seg(512 * 1024 + 512, 1536);
        scatter(patch, unaligned);
        assertSuccess(q.submitAndAwait(1, NVME_OPC_WRITE, 64 * 1024 + 1024, 1536, unaligned), 1536);

        byte[] expected = data.clone();
        System.arraycopy(patch, 0, expected, 1024, 1536);
        Seg target = new Seg(1L << 20, length);
        assertSuccess(q.submitAndAwait(2, NVME_OPC_READ, 64 * 1024, length, target), length);
        assertArrayEquals(stored(expected), gather(target), "an aligned read sees both writes");
        Seg targetUnaligned = new Seg((2L << 20) + 512, 2048);
        assertSuccess(q.submitAndAwait(3, NVME_OPC_READ, 64 * 1024 + 512, 2048, targetUnaligned), 2048);
        assertArrayEquals(
                Arrays.copyOfRange(stored(expected), 512, 2560), gather(targetUnaligned), "so does an unaligned one");
        assertSuccess(q.submitAndAwait(4, NVME_OPC_FLUSH, 0, 0), 0);
        assertArrayEquals(stored(expected), bdevBytes(64 * 1024, length), "the bdev holds both after FLUSH");
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldFailWritesWithWriteFaultWhenBdevIsReadOnly(Kind kind) throws IOException {
        this.kind = kind;
        if (kind.backing != Backing.NULL && kind.backing != Backing.MALLOC) {
            // the image (or loop device) must exist before a read-only open
            openBdev(kind.backing, false).close();
            if (loopDevice != null) {
                detachLoopDevice(loopDevice);
                loopDevice = null;
            }
        }
        bdev = openBdev(kind.backing, true);
        mapGuest();
        engine = kind.engine.create(bdev);
        Queue q = attachQueue(1);
        Seg seg = new Seg(0, 4096);

        assertWritesFailAndReadSucceeds(q, seg);
    }

    @ParameterizedTest
    @EnumSource(
            value = Engine.class,
            names = {"IO_URING", "THREAD_POOL"})
    void shouldUseDirectFdOnlyWhenCommandIsAligned(Engine engineKind) throws IOException {
        // two different files behind the two fds make the routing visible: aligned commands land in the "direct" one
        Path buffered = dir.resolve("buffered.img");
        Path direct = dir.resolve("direct.img");
        for (Path p : new Path[] {buffered, direct}) {
            try (RandomAccessFile f = new RandomAccessFile(p.toFile(), "rw")) {
                f.setLength(BDEV_BYTES);
            }
        }
        this.kind = Kind.IO_URING_FILE;
        int fd = Fcntl.open(buffered.toString(), Fcntl.O_RDWR | Fcntl.O_CLOEXEC, 0);
        int directFd = Fcntl.open(direct.toString(), Fcntl.O_RDWR | Fcntl.O_CLOEXEC | Fcntl.O_DIRECT, 0);
        bdev = new Bdev(
                "routing", "file", buffered.toString(), fd, directFd, BDEV_BYTES, 4096, false, false, null, null, null);
        mapGuest();
        engine = engineKind.create(bdev);
        Queue q = attachQueue(1);
        byte[] data = pattern(8192, 61);
        scatter(data, new Seg(0, 8192));

        assertSuccess(q.submitAndAwait(0, NVME_OPC_WRITE, 0, 8192, new Seg(0, 8192)), 8192);
        assertSuccess(q.submitAndAwait(1, NVME_OPC_WRITE, 16384, 4096, new Seg(512, 4096)), 4096);
        assertSuccess(q.submitAndAwait(2, NVME_OPC_WRITE, 32768 + 512, 1024, new Seg(0, 1024)), 1024);

        assertArrayEquals(data, Arrays.copyOfRange(Files.readAllBytes(direct), 0, 8192), "aligned: direct fd");
        assertArrayEquals(new byte[8192], Arrays.copyOfRange(Files.readAllBytes(buffered), 0, 8192));
        assertArrayEquals(
                Arrays.copyOfRange(data, 512, 4608),
                Arrays.copyOfRange(Files.readAllBytes(buffered), 16384, 20480),
                "a buffer off the block size: buffered fd");
        assertArrayEquals(
                Arrays.copyOfRange(data, 0, 1024),
                Arrays.copyOfRange(Files.readAllBytes(buffered), 33280, 34304),
                "an offset off the block size: buffered fd");
        assertArrayEquals(new byte[4096], Arrays.copyOfRange(Files.readAllBytes(direct), 16384, 20480));
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldPostEveryFetchedCompletionBeforeDetachReturns(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        int length = 64 * 1024;
        Seg seg = new Seg(0, length);
        scatter(pattern(length, 41), seg);
        for (int cid = 0; cid < DEPTH; cid++) {
            q.write(cid, cid % 2 == 0 ? NVME_OPC_WRITE : NVME_OPC_READ, (long) (cid % 32) * length, length, seg);
        }
        q.publish();
        // the engine has fetched at least the first command; more are likely in flight
        assertSuccess(q.await(0), length);

        engine.detach(1);

        // everything the engine fetched (the SQ head passed it) has its completion posted by now
        int fetched = VirtNvmeDescriptor.sqHeadAcquire(q.submitterMemory);
        q.drain();
        assertEquals(fetched - 1, q.completions.size(), "completions posted when detach returned (cid 0 consumed)");
        q.completions.values().forEach(c -> assertSuccess(c, length));
        q.completions.clear();
        assertEquals(0, q.drain(), "nothing completes after detach");

        // attached again, the engine serves the commands it had not fetched
        engine.attach(q.binding);
        for (int cid = fetched; cid < DEPTH; cid++) {
            assertSuccess(q.await(cid), length);
        }
        assertEquals(DEPTH, engine.commandsCompleted());
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldWakeUpWhenSubmissionEventfdWrittenAfterEngineWentIdle(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        Seg seg = new Seg(0, 4096);
        // round 0 runs on a fresh region, whose event index 0 asks for a wake-up anyway; rounds 1..3 need the engine
        for (int round = 0; round <= 3; round++) {
            // the engine arms its SQ event index at its SQ head just before it sleeps on the eventfds
            long deadline = System.nanoTime() + DEADLINE_NS;
            while (VirtNvmeDescriptor.sqEventIndexAcquire(q.submitterMemory) != q.submitter.sqTailIndex()) {
                if (System.nanoTime() > deadline) {
                    fail("engine did not arm its submission wake-up in round " + round);
                }
                Thread.onSpinWait();
            }
            q.write(round, NVME_OPC_WRITE, 0, 4096, seg);

            assertTrue(q.publish(), "the idle engine asks to be woken by the submission eventfd");

            assertSuccess(q.await(round), 4096);
        }
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldAllocateNothingPerCommandWhenBusy(Kind kind) throws IOException {
        assumeTrue(kind.engine != Engine.THREAD_POOL, "the thread-pool fallback hands each command to a worker");
        start(kind);
        Queue q = attachQueue(1);
        scatter(pattern(64 * 1024, 71), new Seg(0, 64 * 1024));
        Thread engineThread = engineThread();
        com.sun.management.ThreadMXBean threads =
                (com.sun.management.ThreadMXBean) java.lang.management.ManagementFactory.getThreadMXBean();
        runBatches(q, 300);
        // JIT compilation and deoptimisation allocate now and then while the loop is still being compiled: take the
        // quietest of several windows. An object per command (16 bytes at least) would show in every window.
        int batches = 100;
        long quietest = Long.MAX_VALUE;
        for (int window = 0; window < 6; window++) {
            long before = threads.getThreadAllocatedBytes(engineThread.threadId());
            runBatches(q, batches);
            quietest = Math.min(quietest, threads.getThreadAllocatedBytes(engineThread.threadId()) - before);
        }
        int commands = batches * 32;
        // the memory engine makes no system call while busy: nothing at all. The io_uring engine's system calls
        // (io_uring_enter, eventfd writes: a few per batch, not per command) still cost a 32-byte MemorySegment each
        // when C2 does not scalar-replace the capture-state slice the JDK makes per downcall
        // (SharedUtils.checkCaptureSegment): less than an object per command, which this bound catches.
        long bound = kind.engine == Engine.MEMORY ? commands : 16L * commands;
        assertTrue(
                quietest < bound, "the engine thread allocated " + quietest + " bytes for " + commands + " commands");
    }

    /** {@code batches} times: 32 commands (4 KiB reads and writes, 1 to 4 segments, a flush), published at once. */
    private static void runBatches(Queue q, int batches) {
        for (int b = 0; b < batches; b++) {
            for (int cid = 0; cid < 32; cid++) {
                int opcode = cid == 31 ? NVME_OPC_FLUSH : cid % 2 == 0 ? NVME_OPC_WRITE : NVME_OPC_READ;
                long offset = (long) ((b * 32 + cid) % 512) * 4096;
                if (opcode == NVME_OPC_FLUSH) {
                    q.write(cid, opcode, 0, 0);
                } else if (cid % 4 == 1) {
                    q.write(cid, opcode, offset, 4096, new Seg(8192, 1024), new Seg(16384, 1024), new Seg(32768, 2048));
                } else {
                    q.write(cid, opcode, offset, 4096, new Seg(4096L * (cid % 16), 4096));
                }
            }
            q.publish();
            for (int cid = 0; cid < 32; cid++) {
                Completion c = q.await(cid);
                assertEquals(VirtNvmeStatus.SUCCESS, c.statusField(), "cid " + cid);
            }
        }
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldReturnWhenClosedWithNothingInFlight(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        assertSuccess(q.submitAndAwait(0, NVME_OPC_FLUSH, 0, 0), 0);

        engine.close();

        engine.close();
        assertThrows(IllegalStateException.class, () -> engine.attach(q.binding), "attach after close");
        assertThrows(IllegalStateException.class, () -> engine.detach(1), "detach after close");
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldPostEveryFetchedCompletionOfEveryQueuePairBeforeDetachAllReturns(Kind kind) throws IOException {
        start(kind);
        Queue a = attachQueue(1);
        Queue b = attachQueue(2);
        Queue other = attachQueue(3);
        int length = 64 * 1024;
        Seg seg = new Seg(0, length);
        scatter(pattern(length, 43), seg);
        for (int cid = 0; cid < DEPTH; cid++) {
            a.write(cid, NVME_OPC_WRITE, (long) (cid % 32) * length, length, seg);
            b.write(cid, NVME_OPC_READ, (long) (cid % 32) * length, length, seg);
        }
        a.publish();
        b.publish();
        assertSuccess(a.await(0), length);
        assertSuccess(b.await(0), length);

        engine.detachAll(1, 2, 99);

        for (Queue q : List.of(a, b)) {
            int fetched = VirtNvmeDescriptor.sqHeadAcquire(q.submitterMemory);
            q.drain();
            assertEquals(fetched - 1, q.completions.size(), "completions posted when detachAll returned");
            q.completions.values().forEach(c -> assertSuccess(c, length));
            q.completions.clear();
            assertEquals(0, q.drain(), "nothing completes after detachAll");
        }
        // the queue pair not named is still served
        assertSuccess(other.submitAndAwait(0, NVME_OPC_FLUSH, 0, 0), 0);
        // detached: attach is free again
        engine.attach(a.binding);
        engine.attach(b.binding);
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldDetachOnlyThatQueuePairWhenItsSqTailIsCorrupt(Kind kind) throws IOException {
        start(kind);
        Queue corrupt = attachQueue(1);
        Queue healthy = attachQueue(2);
        Seg seg = new Seg(0, 4096);
        assertSuccess(corrupt.submitAndAwait(0, NVME_OPC_READ, 0, 4096, seg), 4096);

        // a faulty slave puts its SQ tail more than depth ahead of the head (spec §9.3)
        VirtNvmeDescriptor.sqTailRelease(corrupt.submitterMemory, corrupt.submitter.sqTailIndex() + DEPTH + 1);
        Eventfd.eventfd_write(corrupt.sqEventFd, 1);
        awaitCount("queue pairs failed", engine::queuePairsFailed, 1);

        // the other queue pair is still served, and the corrupt one is gone: detach returns at once, attach is free
        assertSuccess(healthy.submitAndAwait(0, NVME_OPC_WRITE, 0, 4096, seg), 4096);
        engine.detach(1);
        assertEquals(0, corrupt.drain(), "nothing is posted in the corrupt queue pair");
        Queue replacement = attachQueue(1);
        assertSuccess(replacement.submitAndAwait(0, NVME_OPC_READ, 0, 4096, seg), 4096);
        assertSuccess(healthy.submitAndAwait(1, NVME_OPC_FLUSH, 0, 0), 0);
        assertEquals(1, engine.queuePairsFailed());
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldDetachOnlyThatQueuePairWhenSlaveOverflowsItsCq(Kind kind) throws IOException {
        start(kind);
        Queue overflowing = attachQueue(1);
        Queue healthy = attachQueue(2);
        // depth commands whose completions the slave never consumes...
        for (int cid = 0; cid < DEPTH; cid++) {
            overflowing.write(cid, NVME_OPC_FLUSH, 0, 0);
        }
        overflowing.publish();
        awaitCount("completions posted", engine::commandsCompleted, DEPTH);
        // ...then one more, against the flow control of spec §8: its completion finds the CQ full
        overflowing.write(0, NVME_OPC_FLUSH, 0, 0);
        overflowing.publish();
        awaitCount("queue pairs failed", engine::queuePairsFailed, 1);

        assertSuccess(healthy.submitAndAwait(0, NVME_OPC_FLUSH, 0, 0), 0);
        engine.detach(1);
        assertEquals(DEPTH, overflowing.drain(), "the completions posted before the overflow stay");
        assertEquals(DEPTH + 1, engine.commandsCompleted());
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldDropAndCountCommandWhenCidIsNotBelowDepth(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        Seg seg = new Seg(0, 4096);
        for (int bad : new int[] {DEPTH, 0xFFFF}) {
            int slot = q.submitter.sqTailIndex() & (DEPTH - 1);
            q.write(0, NVME_OPC_READ, 0, 4096, seg);
            // a faulty slave rewrites the CID: no CQE can answer it (spec §9.1)
            q.submitterMemory.set(
                    U16_LE, VirtNvmeDescriptor.sqeOffset(slot) + VirtNvmeDescriptor.SQE_CID_OFFSET, (short) bad);
        }
        q.write(1, NVME_OPC_READ, 0, 4096, seg);
        q.publish();

        assertSuccess(q.await(1), 4096);
        assertEquals(2, engine.commandsDropped());
        assertEquals(0, q.drain(), "no CQE for a dropped command");
        assertSuccess(q.submitAndAwait(0, NVME_OPC_READ, 0, 4096, seg), 4096);
        assertEquals(0, engine.queuePairsFailed(), "a bad CID is not a corrupt queue pair");
    }

    @ParameterizedTest
    @EnumSource(
            value = Kind.class,
            names = {"IO_URING_FILE", "THREAD_POOL_FILE", "IO_URING_BLOCK", "THREAD_POOL_BLOCK"})
    void shouldDropCommandWhenItsCidIsStillInFlight(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        Seg seg = new Seg(0, 4096);
        // one batch: the second command reuses the CID of the first, which the device cannot have finished yet (its
        // completion is handled after the batch)
        q.write(7, NVME_OPC_WRITE, 0, 4096, seg);
        q.write(7, NVME_OPC_WRITE, 8192, 4096, seg);
        q.publish();

        assertSuccess(q.await(7), 4096);
        assertEquals(1, engine.commandsDropped());
        assertSuccess(q.submitAndAwait(7, NVME_OPC_FLUSH, 0, 0), 0);
        assertEquals(0, q.drain(), "one CQE for CID 7, then the flush's");
        assertEquals(2, engine.commandsCompleted());
    }

    @ParameterizedTest
    @EnumSource(
            value = Kind.class,
            names = {"IO_URING_FILE", "THREAD_POOL_FILE", "MEMORY_MALLOC"})
    void shouldRefuseAttachWhenEngineServesMaxQueuePairs(Kind kind) throws IOException {
        start(kind);
        Queue served = attachQueue(1);
        // small queue pairs in plain memory, sharing one pair of eventfds: the engine only counts them
        long lengthBytes = VirtNvmeDescriptor.lengthBytes(2, 1);
        List<QpairBinding> bindings = new ArrayList<>();
        for (int id = 2; id <= DeviceEngine.MAX_QPAIRS + 1; id++) {
            VirtNvmeQueuePair qp = VirtNvmeQueuePair.format(arena.allocate(lengthBytes, 64), id, 2, 1);
            bindings.add(new QpairBinding(qp, served.sqEventFd, served.cqEventFd, regions, NSID));
        }
        for (QpairBinding b : bindings.subList(0, DeviceEngine.MAX_QPAIRS - 1)) {
            engine.attach(b);
        }

        IllegalStateException refused =
                assertThrows(IllegalStateException.class, () -> engine.attach(bindings.getLast()));

        assertTrue(refused.getMessage().contains(String.valueOf(DeviceEngine.MAX_QPAIRS)), refused.getMessage());
        assertThrows(IllegalStateException.class, () -> engine.attach(served.binding), "a queue pair attached twice");
        assertSuccess(served.submitAndAwait(0, NVME_OPC_FLUSH, 0, 0), 0);
        engine.detach(2);
        engine.attach(bindings.getLast());
        assertSuccess(served.submitAndAwait(1, NVME_OPC_FLUSH, 0, 0), 0);
    }

    @ParameterizedTest
    @EnumSource(
            value = Kind.class,
            names = {"IO_URING_FILE", "IO_URING_BLOCK"})
    void shouldLeaveNoWakeReadBehindWhenQueuePairDetachedAndAttachedAgain(Kind kind) throws IOException {
        start(kind);
        IoUringEngine uring = (IoUringEngine) engine;
        Queue q = attachQueue(1);
        Queue other = attachQueue(2);
        Seg seg = new Seg(0, 4096);
        for (int round = 0; round < 20; round++) {
            assertSuccess(q.submitAndAwait(round, NVME_OPC_READ, 0, 4096, seg), 4096);

            engine.detach(1);

            // the read parked on the detached queue pair's eventfd was cancelled and reaped before detach returned
            assertEquals(1, uring.wakeReadsPending(), "round " + round + ": only the other queue pair's read");
            engine.attach(q.binding);
            assertEquals(2, uring.wakeReadsPending(), "round " + round);
        }
        // and the eventfd of a detached queue pair is nobody's: what the slave writes stays in its counter
        engine.detach(1);
        Eventfd.eventfd_write(q.sqEventFd, 1);
        assertSuccess(other.submitAndAwait(0, NVME_OPC_FLUSH, 0, 0), 0);
        assertEquals(Poll.POLLIN, Poll.poll(q.sqEventFd, Poll.POLLIN, 0));
    }

    @ParameterizedTest
    @EnumSource(
            value = Kind.class,
            names = {"IO_URING_FILE", "THREAD_POOL_FILE", "MEMORY_MALLOC"})
    void shouldReturnFromCloseWhenEngineThreadDied(Kind kind) throws IOException, InterruptedException {
        start(kind);
        Queue q = attachQueue(1);
        assertSuccess(q.submitAndAwait(0, NVME_OPC_FLUSH, 0, 0), 0);
        Thread engineThread = engineThread();

        // an engine bug: an Error out of the engine loop ends the thread
        assertThrows(CompletionException.class, () -> ((PollingEngine<?>) engine).runOnEngineThread(() -> {
            throw new AssertionError("injected engine failure");
        }));
        engineThread.join(DEADLINE_NS / 1_000_000);
        assertTrue(!engineThread.isAlive(), "the engine thread ended");
        assertThrows(IllegalStateException.class, () -> engine.attach(q.binding), "attach to a dead engine");
        assertThrows(IllegalStateException.class, () -> engine.detach(1), "detach from a dead engine");
        // the dead engine closed its control eventfd; a new eventfd likely gets its number and must stay untouched
        int reused = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        try {
            engine.close();

            engine.close();
            assertEquals(0, Eventfd.eventfd_read(reused), "close() wrote no eventfd of the dead engine's number");
        } finally {
            Unistd.close(reused);
        }
    }

    private static Thread engineThread() {
        return Thread.getAllStackTraces().keySet().stream()
                .filter(t -> t.getName().equals("engine-conformance"))
                .findFirst()
                .orElseThrow();
    }

    /** Spins until {@code counter} reaches {@code expected} (the engine thread bumps it), with the deadline. */
    private static void awaitCount(String what, java.util.function.LongSupplier counter, long expected) {
        long deadline = System.nanoTime() + DEADLINE_NS;
        while (counter.getAsLong() < expected) {
            if (System.nanoTime() > deadline) {
                fail(what + ": " + counter.getAsLong() + ", expected " + expected + " within the deadline");
            }
            Thread.onSpinWait();
        }
        assertEquals(expected, counter.getAsLong(), what);
    }
}
