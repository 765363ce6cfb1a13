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

import io.vhostd.master.bdev.Bdev;
import io.vhostd.master.bdev.FileBdevs;
import io.vhostd.shm.linux.Eventfd;
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
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

/**
 * Conformance suite of {@link DeviceEngine}: every test runs against {@link IoUringEngine} and {@link
 * ThreadPoolEngine} with the same expectations. The set-up is the master's: a file bdev ({@link FileBdevs}), guest
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

    /** The implementations under test. */
    enum Kind {
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
        };

        final String kindName;

        Kind(String kindName) {
            this.kindName = kindName;
        }

        abstract DeviceEngine create(Bdev bdev);
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
                            0,
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
        bdev = FileBdevs.open("conformance", dir.resolve("bdev.img").toString(), BDEV_BYTES, 512, false, false);
        regions = new RegionTable();
        guestFd = Memfd.memfd_create("guest", Memfd.MFD_CLOEXEC);
        Unistd.ftruncate(guestFd, GUEST_MMAP_OFFSET + GUEST_BYTES);
        guest = Mman.mmap(GUEST_BYTES, RW, Mman.MAP_SHARED, guestFd, GUEST_MMAP_OFFSET, arena);
        // the table maps its own copy of the fd, as the master does with the fd a slave sends
        regions.register(REGION_ID, Unistd.dup(guestFd), GUEST_BYTES, GUEST_MMAP_OFFSET);
        engine = kind.create(bdev);
        assertEquals(kind.kindName, engine.kind());
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

    private byte[] bdevBytes(long offsetBytes, int lengthBytes) throws IOException {
        byte[] bytes = new byte[lengthBytes];
        try (RandomAccessFile file = new RandomAccessFile(bdev.path(), "r")) {
            file.seek(offsetBytes);
            file.readFully(bytes);
        }
        return bytes;
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
            assertArrayEquals(data, bdevBytes(offset, length), count + " segments: the file holds the data");

            assertSuccess(q.submitAndAwait(cid++, NVME_OPC_READ, offset, length, target), length);
            assertArrayEquals(data, gather(target), count + " segments: read back into other buffers");
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
        byte[] expected = data.clone();
        Arrays.fill(expected, 16 * 1024, 48 * 1024, (byte) 0);
        assertArrayEquals(expected, gather(target), "zeroes inside the range, the data around it");
    }

    @ParameterizedTest
    @EnumSource(Kind.class)
    void shouldReadZeroesWhenRangeOfFileBdevDiscarded(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        int length = 64 * 1024;
        byte[] data = pattern(length, 17);
        Seg source = new Seg(0, length);
        Seg target = new Seg(1L << 20, length);
        scatter(data, source);
        assertSuccess(q.submitAndAwait(0, NVME_OPC_WRITE, 0, length, source), length);

        assertSuccess(q.submitAndAwait(1, NVME_OPC_DATASET_MANAGEMENT, 0, 32 * 1024), 0);

        // a file bdev punches a hole, which reads back as zeroes (a block device need not)
        assertSuccess(q.submitAndAwait(2, NVME_OPC_READ, 0, length, target), length);
        byte[] expected = data.clone();
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
        assertArrayEquals(data, gather(target));
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
        assertArrayEquals(dataB, gather(targetA));
        assertArrayEquals(dataA, gather(targetB));
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
    void shouldReturnWhenClosedWithNothingInFlight(Kind kind) throws IOException {
        start(kind);
        Queue q = attachQueue(1);
        assertSuccess(q.submitAndAwait(0, NVME_OPC_FLUSH, 0, 0), 0);

        engine.close();

        engine.close();
        assertThrows(IllegalStateException.class, () -> engine.attach(q.binding), "attach after close");
        assertThrows(IllegalStateException.class, () -> engine.detach(1), "detach after close");
    }
}
