package io.vhostd.slave;

import static io.vhostd.slave.TestGuest.Buf.r;
import static io.vhostd.slave.TestGuest.Buf.w;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_AVAIL_F_NO_INTERRUPT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_NEXT;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_IOERR;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_OK;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_UNSUPP;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_FLUSH;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_GET_ID;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_IN;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_OUT;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.master.bdev.FileBdevs;
import io.vhostd.master.engine.IoUringEngine;
import io.vhostd.master.engine.QpairBinding;
import io.vhostd.master.engine.RegionTable;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.vhost.virtio.SplitVirtqueue;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The slave's data path in-process, without QEMU: a {@link TestGuest} drives split virtqueues in memfd guest memory,
 * a {@link ControllerAgent} turns the requests into VirtNvme commands, and the master's real {@link IoUringEngine}
 * executes them on a temp-file bdev, reading and writing guest memory through its own mapping of the memfd. The test
 * kicks through the kick eventfd and waits for used elements by blocking in poll(2) on the call eventfd, with a
 * deadline.
 */
@Timeout(value = 30, unit = TimeUnit.SECONDS)
class ControllerAgentTest {
    private static final int REGION_ID = 11;
    private static final int NSID = 1;
    private static final long GUEST_BYTES = 8L << 20;
    private static final long CAPACITY_BYTES = 4L << 20;
    private static final long CAPACITY_SECTORS = CAPACITY_BYTES / 512;
    private static final int MAX_SEGMENTS = 64;
    private static final int QUEUE_SIZE = 64;
    private static final long DEADLINE_NS = TimeUnit.SECONDS.toNanos(10);
    private static final int RW = Mman.PROT_READ | Mman.PROT_WRITE;
    private static final byte[] SERIAL = Arrays.copyOf("VHOSTD-TEST-0001".getBytes(StandardCharsets.US_ASCII), 20);
    private static final byte STATUS_UNSET = (byte) 0xEE;

    @TempDir
    Path dir;

    private final Arena arena = Arena.ofShared();
    private final List<Queue> queues = new ArrayList<>();
    private TestGuest guest;
    private Bdev bdev;
    private RegionTable regions;
    private IoUringEngine engine;
    private ControllerAgent agent;

    /** One request the guest made: its head and where its status byte and data are. */
    record Request(int head, long statusGpa, long dataGpa, int dataBytes) {}

    /** One virtqueue with its VirtNvme queue pair, eventfds and runner. */
    private final class Queue {
        final TestGuest.Ring ring;
        final int kickFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        final int callFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        final int sqEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        final int cqEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        final int qpairMemfd;
        final VirtNvmeQueuePair submitter;
        final boolean eventIdx;

        Queue(int index, boolean eventIdx) {
            this.eventIdx = eventIdx;
            ring = guest.ring(index, QUEUE_SIZE);
            long lengthBytes = VirtNvmeDescriptor.lengthBytes(QUEUE_SIZE, MAX_SEGMENTS);
            qpairMemfd = Memfd.memfd_create("qpair-" + index, Memfd.MFD_CLOEXEC);
            Unistd.ftruncate(qpairMemfd, lengthBytes);
            // the master's mapping and the slave's, of one memfd
            MemorySegment masterView = Mman.mmap(lengthBytes, RW, Mman.MAP_SHARED, qpairMemfd, 0, arena);
            MemorySegment slaveView = Mman.mmap(lengthBytes, RW, Mman.MAP_SHARED, qpairMemfd, 0, arena);
            VirtNvmeQueuePair executor = VirtNvmeQueuePair.format(masterView, index, QUEUE_SIZE, MAX_SEGMENTS);
            submitter = VirtNvmeQueuePair.attach(slaveView);
            engine.attach(new QpairBinding(executor, sqEventFd, cqEventFd, regions, NSID));
        }

        /** A runner over a new device-side ring, resuming at {@code base} (vhost-user SET_VRING_BASE). */
        QueueRunner runner(int index, int base) {
            SplitVirtqueue vq = ring.queue(eventIdx, MAX_SEGMENTS);
            vq.lastAvailIdx(base);
            vq.usedIdx(base);
            return new QueueRunner(index, vq, guest.memory(), kickFd, callFd, submitter, sqEventFd, cqEventFd);
        }

        void kick() {
            Eventfd.eventfd_write(kickFd, 1);
        }

        /**
         * Waits until used->idx reaches (or passes) {@code target}, as a driver with EVENT_IDX does: ask for a notification at the
         * next used element (used_event = the used idx seen), look again, block on the call eventfd.
         */
        void awaitUsed(int target) {
            long deadline = System.nanoTime() + DEADLINE_NS;
            while (true) {
                int used = ring.usedIdx();
                // u16 ring counters: reached once used - target is "non-negative" modulo 2^16
                if (((used - target) & 0xFFFF) < 0x8000) {
                    return;
                }
                ring.usedEvent(used);
                if (ring.usedIdx() != used) {
                    continue;
                }
                waitForCall(deadline, "used idx " + used + ", waiting for " + target);
            }
        }

        /** Blocks until the call eventfd is signalled; returns its counter (the number of writes since the last read). */
        long waitForCall(long deadline, String what) {
            long leftMs = TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime());
            if (leftMs <= 0) {
                fail("no call within the deadline: " + what);
            }
            if ((Poll.poll(callFd, Poll.POLLIN, (int) leftMs) & Poll.POLLIN) != 0) {
                return Eventfd.eventfd_read(callFd);
            }
            return 0;
        }

        /** used len of each head in used ring entries [from, to). */
        Map<Integer, Integer> usedLens(int from, int to) {
            Map<Integer, Integer> lens = new HashMap<>();
            for (int i = from; i < to; i++) {
                lens.put(ring.usedId(i), ring.usedLen(i));
            }
            return lens;
        }

        void close() {
            Unistd.close(kickFd);
            Unistd.close(callFd);
            Unistd.close(sqEventFd);
            Unistd.close(cqEventFd);
            Unistd.close(qpairMemfd);
        }
    }

    private void start(int numQueues, boolean readOnly, boolean eventIdx) {
        guest = new TestGuest(REGION_ID, GUEST_BYTES);
        try {
            bdev = FileBdevs.open("agent-test", dir.resolve("bdev.img").toString(), CAPACITY_BYTES, 512, false, false);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
        regions = new RegionTable();
        // the master maps the region from its own copy of the fd (RegisterRegion)
        regions.register(REGION_ID, Unistd.dup(guest.fd()), guest.sizeBytes(), 0);
        engine = new IoUringEngine(bdev, MAX_SEGMENTS);
        agent = new ControllerAgent("vhost.test", NSID, CAPACITY_BYTES, readOnly, SERIAL, numQueues, MAX_SEGMENTS);
        agent.start();
        for (int i = 0; i < numQueues; i++) {
            Queue q = new Queue(i, eventIdx);
            queues.add(q);
            agent.startQueue(q.runner(i, 0));
        }
    }

    @AfterEach
    void tearDown() {
        if (agent != null) {
            agent.close();
        }
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
        if (guest != null) {
            guest.close();
        }
        arena.close();
    }

    // ---------------------------------------------------------------- requests, as a virtio-blk driver makes them

    private long header(int type, long sector) {
        long hdr = guest.alloc(16, 16);
        guest.writeBlkHeader(hdr, type, sector);
        return hdr;
    }

    private long status() {
        long status = guest.alloc(1, 1);
        guest.writeByte(status, STATUS_UNSET);
        return status;
    }

    private Request out(Queue q, long sector, byte[] data) {
        long hdr = header(VIRTIO_BLK_T_OUT, sector);
        long buf = guest.alloc(data.length, 512);
        guest.write(buf, data);
        long status = status();
        int head = q.ring.addChain(r(hdr, 16), r(buf, data.length), w(status, 1));
        return new Request(head, status, buf, data.length);
    }

    private Request in(Queue q, long sector, int lengthBytes) {
        long hdr = header(VIRTIO_BLK_T_IN, sector);
        long buf = guest.alloc(lengthBytes, 512);
        long status = status();
        int head = q.ring.addChain(r(hdr, 16), w(buf, lengthBytes), w(status, 1));
        return new Request(head, status, buf, lengthBytes);
    }

    private Request flush(Queue q) {
        long hdr = header(VIRTIO_BLK_T_FLUSH, 0);
        long status = status();
        int head = q.ring.addChain(r(hdr, 16), w(status, 1));
        return new Request(head, status, 0, 0);
    }

    private byte statusOf(Request request) {
        return guest.readByte(request.statusGpa());
    }

    private static byte[] pattern(int lengthBytes, long seed) {
        byte[] bytes = new byte[lengthBytes];
        new Random(seed).nextBytes(bytes);
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

    /** Asserts used element {@code index} completes {@code request} with {@code usedLen} and {@code status}. */
    private void assertUsed(Queue q, int index, Request request, int usedLen, int status) {
        assertEquals(request.head(), q.ring.usedId(index), "used id of element " + index);
        assertEquals(usedLen, q.ring.usedLen(index), "used len of element " + index);
        assertEquals(status, statusOf(request), "status byte of head " + request.head());
    }

    private static void awaitTrue(BooleanSupplier condition, String what) {
        long deadline = System.nanoTime() + DEADLINE_NS;
        while (!condition.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                fail("not within the deadline: " + what);
            }
            Thread.onSpinWait();
        }
    }

    // ---------------------------------------------------------------- tests

    @Test
    void shouldReadBackPatternWhenOutThenIn() throws IOException {
        start(1, false, true);
        Queue q = queues.get(0);
        byte[] data = pattern(8192, 1);

        Request write = out(q, 16, data);
        q.kick();
        q.awaitUsed(1);
        assertUsed(q, 0, write, 1, VIRTIO_BLK_S_OK);
        assertArrayEquals(data, bdevBytes(16 * 512, 8192), "the bdev holds the data");

        Request read = in(q, 16, 8192);
        q.kick();
        q.awaitUsed(2);
        assertUsed(q, 1, read, 8192 + 1, VIRTIO_BLK_S_OK);
        assertArrayEquals(data, guest.read(read.dataGpa(), 8192));
    }

    @Test
    void shouldReadIntoEverySegmentWhenInUsesIndirectTable() {
        start(1, false, true);
        Queue q = queues.get(0);
        byte[] data = pattern(16384, 2);
        out(q, 64, data);
        q.kick();
        q.awaitUsed(1);

        long hdr = header(VIRTIO_BLK_T_IN, 64);
        long[] bufs = {guest.alloc(2048, 512), guest.alloc(8192, 512), guest.alloc(6144, 512)};
        long status = status();
        int head =
                q.ring.addIndirectChain(r(hdr, 16), w(bufs[0], 2048), w(bufs[1], 8192), w(bufs[2], 6144), w(status, 1));
        q.kick();
        q.awaitUsed(2);

        assertUsed(q, 1, new Request(head, status, 0, 0), 16384 + 1, VIRTIO_BLK_S_OK);
        byte[] gathered = new byte[16384];
        System.arraycopy(guest.read(bufs[0], 2048), 0, gathered, 0, 2048);
        System.arraycopy(guest.read(bufs[1], 8192), 0, gathered, 2048, 8192);
        System.arraycopy(guest.read(bufs[2], 6144), 0, gathered, 10240, 6144);
        assertArrayEquals(data, gathered);
    }

    @Test
    void shouldAnswerOkWhenFlush() {
        start(1, false, true);
        Queue q = queues.get(0);
        out(q, 0, pattern(4096, 3));
        Request flush = flush(q);
        q.kick();

        q.awaitUsed(2);

        assertEquals(1, q.usedLens(0, 2).get(flush.head()), "used len: the status byte");
        assertEquals(VIRTIO_BLK_S_OK, statusOf(flush));
    }

    @Test
    void shouldAnswerSerialWhenGetId() {
        start(1, false, true);
        Queue q = queues.get(0);
        long hdr = header(VIRTIO_BLK_T_GET_ID, 0);
        long buf = guest.alloc(20, 16);
        long status = status();
        int head = q.ring.addChain(r(hdr, 16), w(buf, 20), w(status, 1));
        q.kick();

        q.awaitUsed(1);

        assertUsed(q, 0, new Request(head, status, buf, 20), 20 + 1, VIRTIO_BLK_S_OK);
        assertArrayEquals(SERIAL, guest.read(buf, 20));
    }

    @Test
    void shouldAnswerUnsuppWhenRequestTypeUnknown() {
        start(1, false, true);
        Queue q = queues.get(0);
        long hdr = header(0x7F, 0);
        long status = status();
        int head = q.ring.addChain(r(hdr, 16), w(status, 1));
        q.kick();

        q.awaitUsed(1);

        assertUsed(q, 0, new Request(head, status, 0, 0), 1, VIRTIO_BLK_S_UNSUPP);
    }

    @Test
    void shouldAnswerIoerrWhenInBeyondCapacity() {
        start(1, false, true);
        Queue q = queues.get(0);
        Request atEnd = in(q, CAPACITY_SECTORS, 512);
        Request acrossEnd = in(q, CAPACITY_SECTORS - 1, 1024);
        Request overflowing = in(q, Long.MAX_VALUE / 512, 512);
        Request lastSector = in(q, CAPACITY_SECTORS - 1, 512);
        q.kick();

        q.awaitUsed(4);

        Map<Integer, Integer> lens = q.usedLens(0, 4);
        for (Request bad : List.of(atEnd, acrossEnd, overflowing)) {
            assertEquals(1, lens.get(bad.head()), "used len: the status byte only");
            assertEquals(VIRTIO_BLK_S_IOERR, statusOf(bad));
        }
        assertEquals(512 + 1, lens.get(lastSector.head()));
        assertEquals(VIRTIO_BLK_S_OK, statusOf(lastSector));
    }

    @Test
    void shouldAnswerIoerrWhenOutOnReadOnlyController() throws IOException {
        start(1, true, true);
        Queue q = queues.get(0);
        Request write = out(q, 0, pattern(512, 4));
        q.kick();

        q.awaitUsed(1);

        assertUsed(q, 0, write, 1, VIRTIO_BLK_S_IOERR);
        assertArrayEquals(new byte[512], bdevBytes(0, 512), "nothing written");
    }

    @Test
    void shouldAnswerMalformedChainAndServeNextWhenDescriptorsLoop() {
        start(1, false, true);
        Queue q = queues.get(0);
        long hdr = header(VIRTIO_BLK_T_OUT, 0);
        long buf = guest.alloc(512, 512);
        int first = q.ring.takeDesc();
        int second = q.ring.takeDesc();
        // first -> second -> first -> ...: a cycle through next, no device-writable status byte anywhere
        q.ring.writeDesc(first, hdr, 16, VIRTQ_DESC_F_NEXT, second);
        q.ring.writeDesc(second, buf, 512, VIRTQ_DESC_F_NEXT, first);
        q.ring.publish(first);
        q.kick();

        q.awaitUsed(1);
        assertEquals(first, q.ring.usedId(0));
        assertEquals(0, q.ring.usedLen(0), "no status byte to write: nothing written");

        Request next = flush(q);
        q.kick();
        q.awaitUsed(2);
        assertUsed(q, 1, next, 1, VIRTIO_BLK_S_OK);
    }

    @Test
    void shouldServeBothQueuesWhenUsedConcurrently() {
        start(2, false, true);
        Queue a = queues.get(0);
        Queue b = queues.get(1);
        byte[] dataA = pattern(4096, 5);
        byte[] dataB = pattern(4096, 6);
        List<Request> writes = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            writes.add(out(a, 8L * i, dataA));
            writes.add(out(b, 64 + 8L * i, dataB));
        }
        a.kick();
        b.kick();
        a.awaitUsed(8);
        b.awaitUsed(8);
        writes.forEach(req -> assertEquals(VIRTIO_BLK_S_OK, statusOf(req)));

        // each queue reads what the other wrote
        Request readA = in(a, 64 + 8 * 7, 4096);
        Request readB = in(b, 0, 4096);
        a.kick();
        b.kick();
        a.awaitUsed(9);
        b.awaitUsed(9);
        assertUsed(a, 8, readA, 4096 + 1, VIRTIO_BLK_S_OK);
        assertUsed(b, 8, readB, 4096 + 1, VIRTIO_BLK_S_OK);
        assertArrayEquals(dataB, guest.read(readA.dataGpa(), 4096));
        assertArrayEquals(dataA, guest.read(readB.dataGpa(), 4096));
    }

    @Test
    void shouldReturnNextAvailIndexWhenQueueStoppedAfterInflightCompleted() {
        start(1, false, true);
        Queue q = queues.get(0);
        List<Request> requests = new ArrayList<>();
        byte[] data = pattern(65536, 7);
        for (int i = 0; i < 8; i++) {
            requests.add(out(q, 128L * i, data));
        }
        q.kick();
        q.awaitUsed(1);
        for (int i = 8; i < 16; i++) {
            requests.add(out(q, 128L * i, data));
        }
        q.kick();

        int next = agent.stopQueue(0);

        // every request the agent fetched has completed and its used element is published
        assertTrue(next >= 1 && next <= 16, "next avail index " + next);
        assertEquals(next, q.ring.usedIdx(), "used idx when stopQueue returned");
        q.usedLens(0, next).values().forEach(len -> assertEquals(1, len));
        assertEquals(-1, agent.stopQueue(0), "already stopped");

        // started again at that base (SET_VRING_BASE), the queue serves the requests it had not fetched
        agent.startQueue(q.runner(0, next));
        q.kick();
        q.awaitUsed(16);
        requests.forEach(req -> assertEquals(VIRTIO_BLK_S_OK, statusOf(req), "head " + req.head()));
    }

    @Test
    void shouldWriteCallEventfdOnlyWhenGuestAsksForNotification() {
        start(1, false, true);
        Queue q = queues.get(0);
        long deadline = System.nanoTime() + DEADLINE_NS;
        // EVENT_IDX: used_event = 0 asks for a call when used->idx passes 0
        q.ring.usedEvent(0);
        flush(q);
        q.kick();
        assertEquals(1, q.waitForCall(deadline, "first used element"));
        assertEquals(1, q.ring.usedIdx());

        // used_event = 5: no call when used->idx moves from 1 to 2
        q.ring.usedEvent(5);
        flush(q);
        q.kick();
        awaitTrue(() -> q.ring.usedIdx() == 2, "second used element");

        // used_event = 2: a call when used->idx moves from 2 to 3; the counter shows whether the second one called
        q.ring.usedEvent(2);
        flush(q);
        q.kick();
        long calls = q.waitForCall(deadline, "third used element");
        assertEquals(3, q.ring.usedIdx());
        assertEquals(1, calls, "exactly one call since the first: for the third element, none for the second");
    }

    @Test
    void shouldNotCallWhenGuestSetsNoInterruptWithoutEventIdx() {
        start(1, false, false);
        Queue q = queues.get(0);
        long deadline = System.nanoTime() + DEADLINE_NS;
        q.ring.availFlags(VIRTQ_AVAIL_F_NO_INTERRUPT);
        flush(q);
        q.kick();
        awaitTrue(() -> q.ring.usedIdx() == 1, "first used element");

        q.ring.availFlags(0);
        flush(q);
        q.kick();
        long calls = q.waitForCall(deadline, "second used element");
        assertEquals(2, q.ring.usedIdx());
        assertEquals(1, calls, "one call: for the second element only");
    }

    @Test
    void shouldKeepBrokenQueueStoppedAndOtherQueueServingWhenGuestMovesAvailIdxTooFar() {
        start(2, false, true);
        Queue broken = queues.get(0);
        Queue healthy = queues.get(1);
        flush(broken);
        broken.kick();
        broken.awaitUsed(1);

        // avail->idx more than the queue size ahead of the last avail index: the ring is broken
        broken.ring.availIdx(1 + QUEUE_SIZE + 1);
        broken.kick();
        awaitTrue(() -> agent.errors() > 0, "the agent saw the broken ring");

        Request request = flush(healthy);
        healthy.kick();
        healthy.awaitUsed(1);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(request), "the other queue still serves");
        // GET_VRING_BASE of the broken queue answers where it stopped
        assertEquals(1, agent.stopQueue(0));
    }
}
