package io.vhostd.slave;

import static io.vhostd.slave.TestGuest.Buf.r;
import static io.vhostd.slave.TestGuest.Buf.w;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_AVAIL_F_NO_INTERRUPT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_NEXT;
import static io.vhostd.vhost.virtio.SplitRingDescriptor.VIRTQ_DESC_F_WRITE;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_IOERR;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_OK;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_UNSUPP;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_DISCARD;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_FLUSH;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_GET_ID;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_IN;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_OUT;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_T_WRITE_ZEROES;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import io.vhostd.journal.InflightRequest;
import io.vhostd.journal.JournalDescriptor;
import io.vhostd.journal.JournalRecovery;
import io.vhostd.journal.RecoveredQueue;
import io.vhostd.journal.RecoveredSession;
import io.vhostd.journal.SessionJournal;
import io.vhostd.journal.StoreObserver;
import io.vhostd.journal.VringConfig;
import io.vhostd.journal.inflight.InflightChain;
import io.vhostd.journal.inflight.InflightHead;
import io.vhostd.journal.inflight.InflightPackedRecovery;
import io.vhostd.journal.inflight.InflightRegionDescriptor;
import io.vhostd.journal.inflight.InflightRegionPacked;
import io.vhostd.journal.inflight.InflightRegionSplit;
import io.vhostd.journal.inflight.InflightSplitRecovery;
import io.vhostd.master.bdev.Bdev;
import io.vhostd.master.bdev.FileBdevs;
import io.vhostd.master.engine.IoUringEngine;
import io.vhostd.master.engine.QpairBinding;
import io.vhostd.master.engine.RegionTable;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Mman;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Priority;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.stats.HistogramAccumulator;
import io.vhostd.shm.stats.IoCounters;
import io.vhostd.shm.stats.StatsDescriptor;
import io.vhostd.shm.stats.StatsReader;
import io.vhostd.shm.stats.TraceEvent;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import io.vhostd.vhost.virtio.DescriptorChain;
import io.vhostd.vhost.virtio.PackedRingDescriptor;
import io.vhostd.vhost.virtio.PackedVirtqueue;
import io.vhostd.vhost.virtio.SplitVirtqueue;
import io.vhostd.vhost.virtio.VirtioBlk;
import io.vhostd.vhost.virtio.Virtqueue;
import java.io.IOException;
import java.io.RandomAccessFile;
import java.io.UncheckedIOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The slave's data path in-process, without QEMU: a {@link TestGuest} drives split or packed virtqueues in memfd
 * guest memory,
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
    private static final ValueLayout.OfInt LE_U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong LE_U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    @TempDir
    Path dir;

    private final Arena arena = Arena.ofShared();
    private final List<Queue> queues = new ArrayList<>();
    private TestGuest guest;
    private Bdev bdev;
    private RegionTable regions;
    private IoUringEngine engine;
    private ControllerAgent agent;
    /** The virtio features the queues run with (what the driver negotiated). */
    private long features = BlkDevice.FEATURES;
    /** The controller's stats region (issue #5), handed to the agent by {@link #start} when set. */
    private MemorySegment statsRegion;

    /** One request the guest made: its head and where its status byte and data are. */
    record Request(int head, long statusGpa, long dataGpa, int dataBytes) {}

    /** One virtqueue with its VirtNvme queue pair, eventfds and runner. */
    private final class Queue {
        final TestGuest.Ring ring;
        /** The packed ring the queue runs on, or null for the split {@link #ring}. */
        final TestGuest.PackedRing packedRing;
        /** Packed: the used elements the driver took so far, in ring order. */
        final List<TestGuest.PackedRing.Used> used = new ArrayList<>();

        final int kickFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        final int callFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        final int sqEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        final int cqEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        final int qpairMemfd;
        final VirtNvmeQueuePair submitter;
        final boolean eventIdx;

        Queue(int index, boolean eventIdx, int packedSize) {
            this.eventIdx = eventIdx;
            ring = guest.ring(index, QUEUE_SIZE);
            packedRing = packedSize > 0 ? guest.packedRing(index, packedSize) : null;
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
            Virtqueue vq;
            if (packedRing != null) {
                vq = packedRing.queue(eventIdx, MAX_SEGMENTS);
                vq.vringBase(base);
            } else {
                SplitVirtqueue split = ring.queue(eventIdx, MAX_SEGMENTS);
                split.lastAvailIdx(base);
                split.usedIdx(base);
                vq = split;
            }
            return new QueueRunner(
                    index, vq, guest.memory(), kickFd, callFd, submitter, sqEventFd, cqEventFd, features);
        }

        /** Makes a direct chain available on whichever ring the queue runs; returns its id. */
        int add(TestGuest.Buf... bufs) {
            return packedRing != null ? packedRing.addChain(bufs) : ring.addChain(bufs);
        }

        /**
         * Packed: waits until the driver has taken {@code target} used elements in all (into {@link #used}), asking
         * for a notification at its next used descriptor before it blocks on the call eventfd.
         */
        void awaitPackedUsed(int target) {
            long deadline = System.nanoTime() + DEADLINE_NS;
            while (true) {
                for (TestGuest.PackedRing.Used u = packedRing.pollUsed(); u != null; u = packedRing.pollUsed()) {
                    used.add(u);
                }
                if (used.size() >= target) {
                    return;
                }
                packedRing.enableUsedNotification(eventIdx);
                TestGuest.PackedRing.Used u = packedRing.pollUsed();
                if (u != null) {
                    used.add(u);
                    continue;
                }
                waitForCall(deadline, used.size() + " used elements, waiting for " + target);
            }
        }

        /** VirtNvme commands submitted on this queue so far. */
        int commands() {
            return submitter.sqTailIndex();
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
        start(numQueues, readOnly, eventIdx, 0);
    }

    /** {@code packedSize} &gt; 0: packed rings of that size, else split rings of {@link #QUEUE_SIZE}. */
    private void start(int numQueues, boolean readOnly, boolean eventIdx, int packedSize) {
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
        if (statsRegion != null) {
            agent.stats(statsRegion);
        }
        agent.start();
        for (int i = 0; i < numQueues; i++) {
            Queue q = new Queue(i, eventIdx, packedSize);
            queues.add(q);
            agent.startQueue(q.runner(i, packedSize > 0 ? PackedRingDescriptor.VRING_BASE_INITIAL : 0));
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

    // ---------------------------------------------------------------- issue #4: journal and replay

    @Test
    void shouldResubmitJournaledRequestsAndJournalNewOnesWhenSessionIsAdopted() throws IOException {
        guest = new TestGuest(REGION_ID, GUEST_BYTES);
        bdev = FileBdevs.open("agent-test", dir.resolve("bdev.img").toString(), CAPACITY_BYTES, 512, false, false);
        regions = new RegionTable();
        regions.register(REGION_ID, Unistd.dup(guest.fd()), guest.sizeBytes(), 0);
        engine = new IoUringEngine(bdev, MAX_SEGMENTS);
        agent = new ControllerAgent("vhost.test", NSID, CAPACITY_BYTES, false, SERIAL, 1, MAX_SEGMENTS);
        agent.start();
        Queue q = new Queue(0, true, 0);
        queues.add(q);
        byte[] dataA = pattern(4096, 1);
        byte[] dataB = pattern(4096, 2);
        Request a = out(q, 8, dataA);
        Request b = out(q, 64, dataB);

        // the dead slave: started the queue, fetched a then b, died before anything reached the device
        MemorySegment region = arena.allocate(JournalDescriptor.lengthBytes(1, QUEUE_SIZE, 0), 64);
        JournalDescriptor.format(region, 1, QUEUE_SIZE, 0);
        SessionJournal dead = SessionJournal.open(region, JournalRecovery.recover(region, (i, v, c, p) -> c));
        SplitVirtqueue deadRing = q.ring.queue(true, MAX_SEGMENTS);
        dead.recordVring(
                0,
                new VringConfig(
                        QUEUE_SIZE,
                        false,
                        deadRing.descGpa(),
                        deadRing.availGpa(),
                        deadRing.usedRingGpa(),
                        0,
                        0,
                        QUEUE_SIZE,
                        false));
        dead.recordQueueStarted(0, 0, 0);
        dead.requestFetched(0, a.head(), 1);
        dead.requestFetched(0, b.head(), 2);

        // the replacement: recovery, then the queue restarts at the recovered indexes with the requests replayed
        RecoveredSession recovered = JournalRecovery.recover(region, (i, v, c, p) -> c);
        RecoveredQueue rq = recovered.queue(0);
        assertEquals(2, rq.lastAvailIdx());
        assertEquals(0, rq.usedIdx());
        assertEquals(
                List.of(a.head(), b.head()),
                rq.inflight().stream().map(InflightRequest::slot).toList());
        SessionJournal journal = SessionJournal.open(region, recovered);
        agent.journal(journal);
        SplitVirtqueue ring = q.ring.queue(true, MAX_SEGMENTS);
        ring.lastAvailIdx(rq.lastAvailIdx());
        ring.usedIdx(rq.usedIdx());
        QueueRunner runner = new QueueRunner(
                0, ring, guest.memory(), q.kickFd, q.callFd, q.submitter, q.sqEventFd, q.cqEventFd, features);
        runner.journaled = true;
        runner.replayHeads = new int[] {a.head(), b.head()};
        agent.startQueue(runner);

        q.awaitUsed(2);
        assertEquals(VIRTIO_BLK_S_OK, guest.readByte(a.statusGpa()));
        assertEquals(VIRTIO_BLK_S_OK, guest.readByte(b.statusGpa()));
        assertEquals(2, q.commands(), "each request resubmitted once, nothing fetched again");
        assertArrayEquals(dataA, readBdev(8, 4096));
        assertArrayEquals(dataB, readBdev(64, 4096));
        assertEquals(0, journal.inflightCount(0), "the replayed requests completed in the journal");
        assertEquals(2, journal.usedIdx(0));

        // new requests are journaled as the data path fetches and completes them
        Request c = out(q, 128, pattern(512, 3));
        q.kick();
        q.awaitUsed(3);
        assertEquals(VIRTIO_BLK_S_OK, guest.readByte(c.statusGpa()));
        assertEquals(3, journal.lastAvailIdx(0));
        assertEquals(3, journal.usedIdx(0));
        assertEquals(0, journal.inflightCount(0));
    }

    @Test
    void shouldDrainAndLeaveJournalStartedWhenQueuesReleasedForUpgrade() throws IOException {
        Queue q = startBare();
        MemorySegment region = arena.allocate(JournalDescriptor.lengthBytes(1, QUEUE_SIZE, 0), 64);
        JournalDescriptor.format(region, 1, QUEUE_SIZE, 0);
        SessionJournal journal = SessionJournal.open(region, JournalRecovery.recover(region, (i, v, c, p) -> c));
        agent.journal(journal);
        SplitVirtqueue ring = q.ring.queue(true, MAX_SEGMENTS);
        journal.recordVring(
                0,
                new VringConfig(
                        QUEUE_SIZE,
                        false,
                        ring.descGpa(),
                        ring.availGpa(),
                        ring.usedRingGpa(),
                        0,
                        0,
                        QUEUE_SIZE,
                        false));
        journal.recordQueueStarted(0, 0, 0);
        QueueRunner runner = new QueueRunner(
                0, ring, guest.memory(), q.kickFd, q.callFd, q.submitter, q.sqEventFd, q.cqEventFd, features);
        runner.journaled = true;
        agent.startQueue(runner);
        byte[] dataA = pattern(4096, 11);
        byte[] dataB = pattern(4096, 12);
        Request a = out(q, 8, dataA);
        Request b = out(q, 64, dataB);
        q.kick();
        // the old slave stops wherever it is: a and b are in flight, done, or not fetched yet
        awaitTrue(() -> journal.lastAvailIdx(0) >= 1, "the first request fetched");
        int drained = agent.releaseQueues();
        int fetched = journal.lastAvailIdx(0);
        assertTrue(drained >= 0 && drained <= fetched, "drained " + drained + " of " + fetched);
        assertEquals(null, agent.queue(0), "the queue left the data path");
        assertEquals(0, journal.inflightCount(0), "nothing the old slave submitted is in flight any more");
        assertEquals(fetched, journal.usedIdx(0), "every fetched request is published");
        assertEquals(fetched, q.ring.usedIdx(), "the guest sees them all");
        int commands = q.commands();
        agent.close();

        // the new slave: recovers the still started queue with nothing to replay, attaches the queue pair at its
        // published indexes and continues from the last avail index
        ControllerAgent next = new ControllerAgent("vhost.test", NSID, CAPACITY_BYTES, false, SERIAL, 1, MAX_SEGMENTS);
        agent = next;
        next.start();
        RecoveredSession recovered = JournalRecovery.recover(region, (i, v, c, p) -> c);
        RecoveredQueue rq = recovered.queue(0);
        assertEquals(fetched, rq.lastAvailIdx());
        assertEquals(List.of(), rq.inflight());
        SessionJournal continued = SessionJournal.open(region, recovered);
        next.journal(continued);
        long qpairBytes = VirtNvmeDescriptor.lengthBytes(QUEUE_SIZE, MAX_SEGMENTS);
        VirtNvmeQueuePair submitter =
                VirtNvmeQueuePair.attach(Mman.mmap(qpairBytes, RW, Mman.MAP_SHARED, q.qpairMemfd, 0, arena));
        assertEquals(commands, submitter.sqTailIndex(), "the new slave submits after the old one's commands");
        SplitVirtqueue ring2 = q.ring.queue(true, MAX_SEGMENTS);
        ring2.lastAvailIdx(rq.lastAvailIdx());
        ring2.usedIdx(rq.usedIdx());
        QueueRunner runner2 = new QueueRunner(
                0, ring2, guest.memory(), q.kickFd, q.callFd, submitter, q.sqEventFd, q.cqEventFd, features);
        runner2.journaled = true;
        next.startQueue(runner2);
        byte[] dataC = pattern(4096, 13);
        Request c = out(q, 128, dataC);
        q.kick();
        q.awaitUsed(3);
        for (Request r : List.of(a, b, c)) {
            assertEquals(VIRTIO_BLK_S_OK, statusOf(r), "head " + r.head());
        }
        assertEquals(3, submitter.sqTailIndex(), "each request submitted once, by one of the two slaves");
        assertArrayEquals(dataA, readBdev(8, 4096));
        assertArrayEquals(dataB, readBdev(64, 4096));
        assertArrayEquals(dataC, readBdev(128, 4096));
        // the data path ends a batch's journal record after it published used->idx (journal.md §6.2): the guest can
        // see the used element first
        awaitTrue(
                () -> continued.inflightCount(0) == 0 && continued.usedIdx(0) == 3,
                "the last batch's journal record ended");
        assertEquals(0, continued.inflightCount(0));
        assertEquals(3, continued.usedIdx(0));
    }

    @Test
    void shouldRunUrgentCommandAtHandoverPriorityAndGoBackToItsNiceAfterwards() throws Exception {
        agent = new ControllerAgent("vhost.test", NSID, CAPACITY_BYTES, false, SERIAL, 1, MAX_SEGMENTS);
        agent.start();
        agent.barrier();
        int tid = agent.dataPathTid();
        int own = Priority.niceOf(tid);
        boolean realtime = canRunRealtime();
        CompletableFuture<Integer> during = new CompletableFuture<>();
        agent.enqueueUrgent(() -> during.complete(Priority.schedulerOf(Priority.gettid())));
        assertEquals(
                realtime && Priority.HANDOVER_RTPRIO > 0
                        ? Priority.SCHED_FIFO | Priority.SCHED_RESET_ON_FORK
                        : Priority.SCHED_OTHER,
                during.get(5, TimeUnit.SECONDS));
        agent.barrier();
        assertEquals(Priority.SCHED_OTHER, Priority.schedulerOf(tid) & ~Priority.SCHED_RESET_ON_FORK);
        assertEquals(own, Priority.niceOf(tid));
    }

    @Test
    void shouldRunUrgentCommandAtHandoverPriorityWhenItCameBeforeTheThreadStarted() throws Exception {
        // a crash adoption starts the data-path thread just before it hands it the restored queues
        agent = new ControllerAgent("vhost.test", NSID, CAPACITY_BYTES, false, SERIAL, 1, MAX_SEGMENTS);
        CompletableFuture<Integer> during = new CompletableFuture<>();
        agent.enqueueUrgent(() -> during.complete(Priority.schedulerOf(Priority.gettid())));
        agent.start();
        assertEquals(
                canRunRealtime() && Priority.HANDOVER_RTPRIO > 0 ? Priority.SCHED_FIFO : Priority.SCHED_OTHER,
                during.get(5, TimeUnit.SECONDS) & ~Priority.SCHED_RESET_ON_FORK);
        agent.barrier();
        assertEquals(Priority.SCHED_OTHER, Priority.schedulerOf(agent.dataPathTid()) & ~Priority.SCHED_RESET_ON_FORK);
    }

    /** Whether this process may use SCHED_FIFO (CAP_SYS_NICE): tried on a scratch thread. */
    private static boolean canRunRealtime() throws Exception {
        CompletableFuture<Boolean> can = new CompletableFuture<>();
        Thread.ofPlatform().start(() -> {
            try {
                Priority.setScheduler(
                        Priority.gettid(),
                        Priority.SCHED_FIFO | Priority.SCHED_RESET_ON_FORK,
                        Math.max(1, Priority.HANDOVER_RTPRIO));
                can.complete(true);
            } catch (RuntimeException e) {
                can.complete(false);
            }
        });
        return can.get(5, TimeUnit.SECONDS);
    }

    @ParameterizedTest(name = "the master restarts after the take-over: {0}")
    @ValueSource(booleans = {false, true})
    void shouldCompleteCarriedRequestsOnceWhenQueueIsHandedOverInFlight(boolean masterRestarts) throws IOException {
        Queue q = startBare();
        // the test is the device: commands stay "at the device" until it completes them
        engine.detach(0);
        long qpairBytes = VirtNvmeDescriptor.lengthBytes(QUEUE_SIZE, MAX_SEGMENTS);
        VirtNvmeQueuePair device =
                VirtNvmeQueuePair.attach(Mman.mmap(qpairBytes, RW, Mman.MAP_SHARED, q.qpairMemfd, 0, arena));
        MemorySegment region = arena.allocate(JournalDescriptor.lengthBytes(1, QUEUE_SIZE, 0), 64);
        JournalDescriptor.format(region, 1, QUEUE_SIZE, 0);
        SessionJournal journal = SessionJournal.open(region, JournalRecovery.recover(region, (i, v, c, p) -> c));
        agent.journal(journal);
        SplitVirtqueue ring = q.ring.queue(true, MAX_SEGMENTS);
        journal.recordVring(
                0,
                new VringConfig(
                        QUEUE_SIZE,
                        false,
                        ring.descGpa(),
                        ring.availGpa(),
                        ring.usedRingGpa(),
                        0,
                        0,
                        QUEUE_SIZE,
                        false));
        journal.recordQueueStarted(0, 0, 0);
        QueueRunner runner = new QueueRunner(
                0, ring, guest.memory(), q.kickFd, q.callFd, q.submitter, q.sqEventFd, q.cqEventFd, features);
        runner.journaled = true;
        agent.startQueue(runner);
        Request a = out(q, 8, pattern(4096, 21));
        Request b = out(q, 64, pattern(4096, 22));
        q.kick();
        awaitTrue(() -> device.submissionsPending() == 2, "both commands at the device");
        List<Integer> cids = new ArrayList<>();
        device.pollSubmissions(command -> cids.add(command.cid()), 2);

        // the old slave lets go with both requests at the device
        List<ControlMessage.CarriedQueue> carried = agent.handOverQueues(SlaveController.MAX_CARRIED_COMMANDS);
        agent.barrier();
        assertEquals(
                Priority.SCHED_OTHER,
                Priority.schedulerOf(agent.dataPathTid()) & ~Priority.SCHED_RESET_ON_FORK,
                "the data path gave the queue up at the handover priority and went back to its own");
        assertEquals(1, carried.size());
        ControlMessage.CarriedQueue c = carried.get(0);
        assertEquals(List.of(a.head(), b.head()), c.heads().stream().sorted().toList());
        assertEquals(cids.stream().sorted().toList(), c.cids().stream().sorted().toList());
        assertEquals(null, agent.queue(0), "the queue left the old data path");
        assertEquals(2, journal.inflightCount(0), "the journal still holds both in flight");
        agent.close();
        // one completes while no slave owns the queue
        assertTrue(device.postCompletion(cids.get(0), VirtNvmeStatus.SUCCESS, 4096));
        device.publishCompletions();

        // the new slave: nothing to replay, both taken over
        ControllerAgent next = new ControllerAgent("vhost.test", NSID, CAPACITY_BYTES, false, SERIAL, 1, MAX_SEGMENTS);
        agent = next;
        next.start();
        RecoveredSession recovered = JournalRecovery.recover(region, (i, v, cc, p) -> cc);
        assertEquals(2, recovered.queue(0).inflight().size());
        SessionJournal continued = SessionJournal.open(region, recovered);
        next.journal(continued);
        VirtNvmeQueuePair submitter =
                VirtNvmeQueuePair.attach(Mman.mmap(qpairBytes, RW, Mman.MAP_SHARED, q.qpairMemfd, 0, arena));
        SplitVirtqueue ring2 = q.ring.queue(true, MAX_SEGMENTS);
        ring2.lastAvailIdx(recovered.queue(0).lastAvailIdx());
        ring2.usedIdx(recovered.queue(0).usedIdx());
        QueueRunner runner2 = new QueueRunner(
                0, ring2, guest.memory(), q.kickFd, q.callFd, submitter, q.sqEventFd, q.cqEventFd, features);
        runner2.journaled = true;
        runner2.carried = c;
        next.startQueue(runner2);
        // with a master restart, b's command (fetched by the dead master, never completed) is submitted again from
        // the SQE the new slave copied from the SQ at the take-over: the request completes, no IOERR
        VirtNvmeQueuePair executor =
                masterRestarts ? restartMasterLosing(next, q, qpairBytes, cids.get(1), 64L * 512) : device;
        assertTrue(executor.postCompletion(cids.get(1), VirtNvmeStatus.SUCCESS, 4096));
        if (executor.publishCompletions()) {
            Eventfd.eventfd_write(q.cqEventFd, 1);
        }
        Eventfd.eventfd_write(q.cqEventFd, 1);
        q.awaitUsed(2);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(a));
        assertEquals(VIRTIO_BLK_S_OK, statusOf(b));
        assertEquals(Map.of(a.head(), 1, b.head(), 1), q.usedLens(0, 2));
        assertEquals(masterRestarts ? 3 : 2, submitter.sqTailIndex(), "submitted again only after a master restart");
        awaitTrue(() -> continued.inflightCount(0) == 0, "completed in the journal");
        assertEquals(2, continued.usedIdx(0));

        // the new slave's own requests get CIDs that are free again
        Request d = out(q, 128, pattern(512, 23));
        q.kick();
        awaitTrue(() -> executor.submissionsPending() == 1, "the new request at the device");
        executor.pollSubmissions(
                command -> {
                    assertTrue(executor.postCompletion(command.cid(), VirtNvmeStatus.SUCCESS, 512));
                },
                1);
        executor.publishCompletions();
        Eventfd.eventfd_write(q.cqEventFd, 1);
        q.awaitUsed(3);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(d));
    }

    /**
     * The master dies with {@code lostCid} fetched and not completed; a restarted one attaches, and {@code slave}
     * submits that command again (once) from its copy of the SQE, at {@code offsetBytes}.
     */
    private VirtNvmeQueuePair restartMasterLosing(
            ControllerAgent slave, Queue q, long qpairBytes, int lostCid, long offsetBytes) {
        VirtNvmeQueuePair restarted =
                VirtNvmeQueuePair.attach(Mman.mmap(qpairBytes, RW, Mman.MAP_SHARED, q.qpairMemfd, 0, arena));
        assertEquals(1, slave.masterRestarted(new int[] {restarted.sqHeadIndex()}, new boolean[] {true}));
        List<Long> again = new ArrayList<>();
        restarted.pollSubmissions(
                command -> {
                    assertEquals(lostCid, command.cid());
                    assertEquals(VirtNvmeStatus.SUCCESS, command.validate());
                    again.add(command.offsetBytes());
                },
                8);
        assertEquals(List.of(offsetBytes), again);
        return restarted;
    }

    /** A packed session journal of one queue of {@code size} (journal.md §6.5), started at the ring's positions. */
    private SessionJournal packedJournal(MemorySegment region, PackedVirtqueue ring, int size) {
        JournalDescriptor.format(region, 1, size, JournalDescriptor.ENTRY_COPY_LENGTH);
        SessionJournal journal = SessionJournal.open(region, JournalRecovery.recover(region, (i, v, c, p) -> c));
        journal.recordVring(
                0,
                new VringConfig(
                        size, true, ring.descGpa(), ring.driverEventGpa(), ring.deviceEventGpa(), 0, 0, size, true));
        journal.recordQueueStarted(0, ring.lastAvailIdx(), ring.usedIdx());
        return journal;
    }

    /** What BlkDevice.restorePacked does without an inflight region: the journal's chains, from its copies. */
    private static InflightChain journalChain(SessionJournal journal, int id) {
        return new InflightChain(-1, 0, journal.packedChain(0, id));
    }

    @Test
    void shouldResubmitPackedChainFromJournalCopiesWhenGuestReusedItsRingPositions() throws IOException {
        int size = 16;
        Queue q = startBare(size);
        // the test is the device of the dead slave: commands stay "at the device" until it completes them
        engine.detach(0);
        long qpairBytes = VirtNvmeDescriptor.lengthBytes(QUEUE_SIZE, MAX_SEGMENTS);
        VirtNvmeQueuePair device =
                VirtNvmeQueuePair.attach(Mman.mmap(qpairBytes, RW, Mman.MAP_SHARED, q.qpairMemfd, 0, arena));
        MemorySegment region =
                arena.allocate(JournalDescriptor.lengthBytes(1, size, JournalDescriptor.ENTRY_COPY_LENGTH), 64);
        PackedVirtqueue ring = q.packedRing.queue(true, MAX_SEGMENTS);
        SessionJournal journal = packedJournal(region, ring, size);
        agent.journal(journal);
        QueueRunner runner = new QueueRunner(
                0, ring, guest.memory(), q.kickFd, q.callFd, q.submitter, q.sqEventFd, q.cqEventFd, features);
        runner.journaled = true;
        agent.startQueue(runner);
        byte[] dataA = pattern(4096, 41);
        Request a = out(q, 8, dataA); // ring positions 0..2
        Request b = out(q, 64, pattern(4096, 42)); // 3..5
        q.kick();
        awaitTrue(() -> device.submissionsPending() == 2, "both commands at the device");
        List<Integer> cids = new ArrayList<>();
        device.pollSubmissions(command -> cids.add(command.cid()), 2);
        // b completes first: its used descriptor goes to ring position 0, over a's first descriptor
        assertTrue(device.postCompletion(cids.get(1), VirtNvmeStatus.SUCCESS, 4096));
        device.publishCompletions();
        Eventfd.eventfd_write(q.cqEventFd, 1);
        q.awaitPackedUsed(1);
        assertEquals(b.head(), q.used.get(0).id());
        awaitTrue(() -> journal.inflightCount(0) == 1, "b completed in the journal");
        // the slave dies with a in flight
        agent.close();

        // the guest reuses ring positions: f takes 15, 0 and 1, where a's descriptors were
        List<Request> later = new ArrayList<>();
        List<byte[]> laterData = new ArrayList<>();
        for (int i = 0; i < 4; i++) {
            laterData.add(pattern(4096, 43 + i));
            later.add(out(q, 128 + 64 * i, laterData.get(i)));
        }

        // the replacement: recovery gives a from the copies; the device is a real engine again
        ControllerAgent next = new ControllerAgent("vhost.test", NSID, CAPACITY_BYTES, false, SERIAL, 1, MAX_SEGMENTS);
        agent = next;
        next.start();
        RecoveredSession recovered = JournalRecovery.recover(region, (i, v, c, p) -> c);
        RecoveredQueue rq = recovered.queue(0);
        assertEquals(
                List.of(a.head()),
                rq.inflight().stream().map(InflightRequest::slot).toList());
        assertEquals(PackedRingDescriptor.encodeIndex(6, true), rq.lastAvailIdx());
        assertEquals(PackedRingDescriptor.encodeIndex(3, true), rq.usedIdx());
        SessionJournal continued = SessionJournal.open(region, recovered);
        next.journal(continued);
        engine.attach(new QpairBinding(device, q.sqEventFd, q.cqEventFd, regions, NSID));
        VirtNvmeQueuePair submitter =
                VirtNvmeQueuePair.attach(Mman.mmap(qpairBytes, RW, Mman.MAP_SHARED, q.qpairMemfd, 0, arena));
        PackedVirtqueue ring2 = q.packedRing.queue(true, MAX_SEGMENTS);
        ring2.vringBase(rq.lastAvailIdx() | rq.usedIdx() << 16);
        QueueRunner runner2 = new QueueRunner(
                0, ring2, guest.memory(), q.kickFd, q.callFd, submitter, q.sqEventFd, q.cqEventFd, features);
        runner2.journaled = true;
        runner2.replayChains = new InflightChain[] {journalChain(continued, a.head())};
        next.startQueue(runner2);
        q.kick();
        q.awaitPackedUsed(6);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(a));
        assertArrayEquals(dataA, readBdev(8, 4096), "a executed from its copies, not from f's descriptors");
        for (int i = 0; i < later.size(); i++) {
            assertEquals(VIRTIO_BLK_S_OK, statusOf(later.get(i)));
            assertArrayEquals(laterData.get(i), readBdev(128 + 64 * i, 4096));
        }
        assertEquals(
                6, q.used.stream().map(TestGuest.PackedRing.Used::id).distinct().count(), "each request used once");
        awaitTrue(() -> continued.inflightCount(0) == 0, "all completed in the journal");
        assertEquals(ring2.usedIdx(), continued.usedIdx(0));
        assertEquals(ring2.lastAvailIdx(), continued.lastAvailIdx(0));
    }

    @Test
    void shouldCompleteCarriedPackedChainsOnceWhenQueueIsHandedOverInFlight() throws IOException {
        int size = 16;
        Queue q = startBare(size);
        engine.detach(0);
        long qpairBytes = VirtNvmeDescriptor.lengthBytes(QUEUE_SIZE, MAX_SEGMENTS);
        VirtNvmeQueuePair device =
                VirtNvmeQueuePair.attach(Mman.mmap(qpairBytes, RW, Mman.MAP_SHARED, q.qpairMemfd, 0, arena));
        MemorySegment region =
                arena.allocate(JournalDescriptor.lengthBytes(1, size, JournalDescriptor.ENTRY_COPY_LENGTH), 64);
        PackedVirtqueue ring = q.packedRing.queue(true, MAX_SEGMENTS);
        SessionJournal journal = packedJournal(region, ring, size);
        agent.journal(journal);
        QueueRunner runner = new QueueRunner(
                0, ring, guest.memory(), q.kickFd, q.callFd, q.submitter, q.sqEventFd, q.cqEventFd, features);
        runner.journaled = true;
        agent.startQueue(runner);
        Request a = out(q, 8, pattern(4096, 51));
        Request b = out(q, 64, pattern(4096, 52));
        q.kick();
        awaitTrue(() -> device.submissionsPending() == 2, "both commands at the device");
        List<Integer> cids = new ArrayList<>();
        device.pollSubmissions(command -> cids.add(command.cid()), 2);

        // the old slave lets go with both at the device
        List<ControlMessage.CarriedQueue> carried = agent.handOverQueues(SlaveController.MAX_CARRIED_COMMANDS);
        ControlMessage.CarriedQueue c = carried.get(0);
        assertEquals(List.of(a.head(), b.head()), c.heads().stream().sorted().toList());
        assertEquals(2, journal.inflightCount(0));
        agent.close();
        assertTrue(device.postCompletion(cids.get(1), VirtNvmeStatus.SUCCESS, 4096));
        device.publishCompletions();

        ControllerAgent next = new ControllerAgent("vhost.test", NSID, CAPACITY_BYTES, false, SERIAL, 1, MAX_SEGMENTS);
        agent = next;
        next.start();
        RecoveredSession recovered = JournalRecovery.recover(region, (i, v, cc, p) -> cc);
        SessionJournal continued = SessionJournal.open(region, recovered);
        next.journal(continued);
        VirtNvmeQueuePair submitter =
                VirtNvmeQueuePair.attach(Mman.mmap(qpairBytes, RW, Mman.MAP_SHARED, q.qpairMemfd, 0, arena));
        PackedVirtqueue ring2 = q.packedRing.queue(true, MAX_SEGMENTS);
        RecoveredQueue rq = recovered.queue(0);
        ring2.vringBase(rq.lastAvailIdx() | rq.usedIdx() << 16);
        QueueRunner runner2 = new QueueRunner(
                0, ring2, guest.memory(), q.kickFd, q.callFd, submitter, q.sqEventFd, q.cqEventFd, features);
        runner2.journaled = true;
        runner2.carried = c;
        runner2.carriedChains = new InflightChain[size];
        for (int id : c.heads()) {
            runner2.carriedChains[id] = journalChain(continued, id);
        }
        next.startQueue(runner2);
        assertTrue(device.postCompletion(cids.get(0), VirtNvmeStatus.SUCCESS, 4096));
        device.publishCompletions();
        Eventfd.eventfd_write(q.cqEventFd, 1);
        q.awaitPackedUsed(2);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(a));
        assertEquals(VIRTIO_BLK_S_OK, statusOf(b));
        assertEquals(
                Set.of(a.head(), b.head()),
                q.used.stream().map(TestGuest.PackedRing.Used::id).collect(Collectors.toSet()));
        assertEquals(2, submitter.sqTailIndex(), "nothing submitted again");
        awaitTrue(() -> continued.inflightCount(0) == 0, "completed in the journal");
        assertEquals(PackedRingDescriptor.encodeIndex(6, true), continued.usedIdx(0));
    }

    @Test
    void shouldResubmitOnlyTheCommandsTheDeadMasterFetchedWhenTheMasterRestarts() throws IOException {
        Queue q = startBare();
        // the test is the master: commands stay "at the device" until it completes them
        engine.detach(0);
        long qpairBytes = VirtNvmeDescriptor.lengthBytes(QUEUE_SIZE, MAX_SEGMENTS);
        VirtNvmeQueuePair dead =
                VirtNvmeQueuePair.attach(Mman.mmap(qpairBytes, RW, Mman.MAP_SHARED, q.qpairMemfd, 0, arena));
        agent.startQueue(q.runner(0, 0));
        Request a = out(q, 8, pattern(4096, 31));
        Request b = out(q, 64, pattern(8192, 32));
        Request c = out(q, 128, pattern(512, 33));
        q.kick();
        awaitTrue(() -> dead.submissionsPending() == 3, "three commands in the SQ");
        List<Integer> fetchedCids = new ArrayList<>();
        dead.pollSubmissions(command -> fetchedCids.add(command.cid()), 2);
        // the dead master completed a's command and posted it; b's it fetched and lost; c's is still in the SQ
        assertTrue(dead.postCompletion(fetchedCids.get(0), VirtNvmeStatus.SUCCESS, 4096));

        VirtNvmeQueuePair restarted =
                VirtNvmeQueuePair.attach(Mman.mmap(qpairBytes, RW, Mman.MAP_SHARED, q.qpairMemfd, 0, arena));
        assertEquals(2, restarted.sqHeadIndex());
        assertEquals(1, restarted.cqTailIndex());
        assertEquals(1, agent.masterRestarted(new int[] {restarted.sqHeadIndex()}, new boolean[] {true}));
        q.awaitUsed(1);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(a));

        List<Integer> order = new ArrayList<>();
        List<Long> offsets = new ArrayList<>();
        restarted.pollSubmissions(
                command -> {
                    order.add(command.cid());
                    offsets.add(command.offsetBytes());
                    assertEquals(VirtNvmeStatus.SUCCESS, command.validate());
                },
                8);
        assertEquals(List.of(128L * 512, 64L * 512), offsets, "c from the SQ, then b submitted again, once");
        assertEquals(fetchedCids.get(1), order.get(1), "b keeps its CID");
        assertEquals(4, q.submitter.sqTailIndex(), "one command submitted twice, the others once");
        for (int cid : order) {
            assertTrue(restarted.postCompletion(cid, VirtNvmeStatus.SUCCESS, 0));
        }
        restarted.publishCompletions();
        Eventfd.eventfd_write(q.cqEventFd, 1);
        q.awaitUsed(3);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(b));
        assertEquals(VIRTIO_BLK_S_OK, statusOf(c));
        assertEquals(Map.of(a.head(), 1, b.head(), 1, c.head(), 1), q.usedLens(0, 3));
    }

    @Test
    void shouldRefuseCarryOverWhenCidOrHeadIsInvalid() throws IOException {
        Queue q = startBare();
        engine.detach(0);
        Request a = out(q, 8, pattern(4096, 31));
        QueueRunner runner = q.runner(0, 1);
        runner.carried = new ControlMessage.CarriedQueue(
                0, List.of(a.head()), List.of(0), List.of(QUEUE_SIZE), List.of(a.head()));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> startQueueUnwrapped(runner));
        assertTrue(e.getMessage().contains("CID " + QUEUE_SIZE), e.getMessage());
        QueueRunner noCommand = q.runner(0, 1);
        noCommand.carried = new ControlMessage.CarriedQueue(0, List.of(a.head()), List.of(0), List.of(), List.of());
        e = assertThrows(IllegalArgumentException.class, () -> startQueueUnwrapped(noCommand));
        assertTrue(e.getMessage().contains("has no command"), e.getMessage());
        assertEquals(null, agent.queue(0), "a refused carry-over starts nothing");
    }

    private void startQueueUnwrapped(QueueRunner runner) {
        try {
            agent.startQueue(runner);
        } catch (java.util.concurrent.CompletionException e) {
            throw (RuntimeException) e.getCause();
        }
    }

    // ---------------------------------------------------------------- issue #4: vhost-user inflight region

    /** Agent, bdev, engine and one split queue, not started. */
    private Queue startBare() throws IOException {
        return startBare(0);
    }

    /** Agent, bdev, engine and one queue (packed of {@code packedSize} if &gt; 0, else split), not started. */
    private Queue startBare(int packedSize) throws IOException {
        guest = new TestGuest(REGION_ID, GUEST_BYTES);
        bdev = FileBdevs.open("agent-test", dir.resolve("bdev.img").toString(), CAPACITY_BYTES, 512, false, false);
        regions = new RegionTable();
        regions.register(REGION_ID, Unistd.dup(guest.fd()), guest.sizeBytes(), 0);
        engine = new IoUringEngine(bdev, MAX_SEGMENTS);
        agent = new ControllerAgent("vhost.test", NSID, CAPACITY_BYTES, false, SERIAL, 1, MAX_SEGMENTS);
        agent.start();
        Queue q = new Queue(0, true, packedSize);
        queues.add(q);
        return q;
    }

    private MemorySegment inflightQueueRegion() {
        long length = InflightRegionDescriptor.queueRegionSplitLengthBytes(QUEUE_SIZE);
        return arena.allocate(length, InflightRegionDescriptor.INFLIGHT_ALIGNMENT);
    }

    @Test
    void shouldMarkFetchedHeadsAndClearThemInTwoPhasesWhenInflightRegionTracksTheQueue() throws IOException {
        Queue q = startBare();
        MemorySegment region = inflightQueueRegion();
        InflightRegionSplit inflight = new InflightRegionSplit(region, 0, QUEUE_SIZE, StoreObserver.NONE);
        assertTrue(inflight.start(0).fresh());
        QueueRunner runner = q.runner(0, 0);
        runner.inflightRegion = inflight;
        Request a = out(q, 8, pattern(4096, 1));
        Request b = out(q, 16, pattern(4096, 2));
        agent.startQueue(runner);
        q.kick();
        q.awaitUsed(2);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(a));
        assertEquals(VIRTIO_BLK_S_OK, statusOf(b));
        // used_idx is stored last in a batch; the data path's thread may still be between used->idx and it
        awaitTrue(() -> inflight.usedIdx() == 2 && inflight.inflightCount() == 0, "batch committed in the region");
        awaitTrue(
                () -> region.get(ValueLayout.JAVA_SHORT, InflightRegionDescriptor.QUEUE_REGION_SPLIT_USED_IDX_OFFSET)
                        == 2,
                "used_idx in shared memory");
        for (Request r : List.of(a, b)) {
            long desc = InflightRegionDescriptor.QUEUE_REGION_SPLIT_DESC_OFFSET
                    + (long) InflightRegionDescriptor.DESC_STATE_SPLIT_LENGTH * r.head();
            assertEquals(0, region.get(ValueLayout.JAVA_BYTE, desc), "head " + r.head() + " cleared");
        }
        assertEquals(2, inflight.counter(), "one counter per fetched head");
    }

    @Test
    void shouldResubmitRegionHeadsOnceInCounterOrderWhenFrontEndReconnected() throws IOException {
        Queue q = startBare();
        byte[] dataA = pattern(4096, 3);
        byte[] dataB = pattern(4096, 4);
        Request a = out(q, 8, dataA);
        Request b = out(q, 64, dataB);
        MemorySegment region = inflightQueueRegion();
        // the dead daemon fetched a, then b, and died before either reached the device
        InflightRegionSplit dead = new InflightRegionSplit(region, 0, QUEUE_SIZE, StoreObserver.NONE);
        dead.start(0);
        dead.fetched(a.head());
        dead.fetched(b.head());
        // the new daemon: QEMU handed the region back (SET_INFLIGHT_FD); recovery when the ring starts
        InflightRegionSplit inflight = new InflightRegionSplit(region, 0, QUEUE_SIZE, StoreObserver.NONE);
        InflightSplitRecovery recovery = inflight.start(0);
        assertEquals(2, recovery.lastAvailIdx());
        QueueRunner runner = q.runner(0, recovery.lastAvailIdx());
        runner.vq.usedIdx(recovery.usedIdx());
        runner.inflightRegion = inflight;
        runner.replayHeads =
                recovery.resubmit().stream().mapToInt(InflightHead::head).toArray();
        agent.startQueue(runner);
        q.awaitUsed(2);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(a));
        assertEquals(VIRTIO_BLK_S_OK, statusOf(b));
        assertEquals(2, q.commands(), "each request resubmitted once, nothing fetched twice");
        assertArrayEquals(dataA, readBdev(8, 4096));
        assertArrayEquals(dataB, readBdev(64, 4096));
        Request c = out(q, 128, pattern(512, 5));
        q.kick();
        q.awaitUsed(3);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(c));
        awaitTrue(() -> inflight.usedIdx() == 3 && inflight.inflightCount() == 0, "all committed in the region");
        assertEquals(3, q.commands());
    }

    private static final int PACKED_SIZE = 6;

    private MemorySegment packedQueueRegion() {
        long length = InflightRegionDescriptor.queueRegionPackedLengthBytes(PACKED_SIZE);
        return arena.allocate(length, InflightRegionDescriptor.INFLIGHT_ALIGNMENT);
    }

    @Test
    void shouldCopyPackedChainsAndReturnThemInTwoPhasesWhenInflightRegionTracksThePackedQueue() throws IOException {
        Queue q = startBare(PACKED_SIZE);
        InflightRegionPacked inflight =
                new InflightRegionPacked(packedQueueRegion(), 0, PACKED_SIZE, StoreObserver.NONE);
        assertTrue(inflight.start(0, true, off -> 0).fresh());
        QueueRunner runner = q.runner(0, PackedRingDescriptor.VRING_BASE_INITIAL);
        runner.packedRegion = inflight;
        agent.startQueue(runner);
        // three OUTs of three descriptors each: the second lap of the six-entry ring flips the wrap counters
        for (int i = 0; i < 3; i++) {
            Request r = out(q, 8 * (i + 1), pattern(512, 10 + i));
            q.kick();
            q.awaitPackedUsed(i + 1);
            assertEquals(VIRTIO_BLK_S_OK, statusOf(r));
        }
        awaitTrue(() -> inflight.inflightCount() == 0 && inflight.usedIdx() == 3, "all chains returned");
        assertEquals(false, inflight.usedWrapCounter(), "9 descriptors on a ring of 6: second lap");
        assertEquals(3, inflight.counter());
    }

    @Test
    void shouldLeavePackedChainsInFlightInTheRegionWhileAtTheDevice() throws IOException {
        Queue q = startBare(PACKED_SIZE);
        MemorySegment region = packedQueueRegion();
        InflightRegionPacked inflight = new InflightRegionPacked(region, 0, PACKED_SIZE, StoreObserver.NONE);
        inflight.start(0, true, off -> 0);
        QueueRunner runner = q.runner(0, PackedRingDescriptor.VRING_BASE_INITIAL);
        runner.packedRegion = inflight;
        agent.startQueue(runner);
        // first a few completed requests (the free list reordered, the ring past its end), then the device stops
        for (int i = 0; i < 3; i++) {
            out(q, 8 * (i + 1), pattern(512, 40 + i));
            q.kick();
            q.awaitPackedUsed(i + 1);
        }
        engine.close();
        engine = null;
        out(q, 8, pattern(512, 1));
        // an indirect chain: one ring descriptor, as the Linux packed-ring driver makes them
        long hdr = header(VIRTIO_BLK_T_OUT, 16);
        long buf = guest.alloc(512, 512);
        long st = status();
        q.packedRing.addIndirectChain(r(hdr, 16), r(buf, 512), w(st, 1));
        q.kick();
        awaitTrue(() -> q.commands() == 5, "both submitted, no engine to complete them");
        PackedVirtqueue ring = (PackedVirtqueue) runner.vq;
        InflightPackedRecovery recovery = new InflightRegionPacked(region, 0, PACKED_SIZE, StoreObserver.NONE)
                .start(0, true, ring::ringDescFlags);
        assertEquals(2, recovery.resubmit().size(), "in flight in the region: " + recovery);
        // 3 x 3 descriptors used, then 3 + 1 in flight: 13 descriptors on a ring of 6
        assertEquals(13 % PACKED_SIZE, recovery.lastAvailIdx());
        assertEquals(9 % PACKED_SIZE, recovery.usedIdx());
    }

    @Test
    void shouldResubmitPackedChainsFromCopiesWhenFrontEndReconnected() throws IOException {
        Queue q = startBare(PACKED_SIZE);
        byte[] dataA = pattern(4096, 31);
        byte[] dataB = pattern(4096, 32);
        Request a = out(q, 8, dataA);
        Request b = out(q, 64, dataB);
        MemorySegment region = packedQueueRegion();
        // the dead daemon took both chains from the ring and copied them into its region, then died
        InflightRegionPacked dead = new InflightRegionPacked(region, 0, PACKED_SIZE, StoreObserver.NONE);
        dead.start(0, true, off -> 0);
        PackedVirtqueue deadRing = q.packedRing.queue(true, MAX_SEGMENTS);
        DescriptorChain popped = new DescriptorChain(MAX_SEGMENTS);
        for (int c = 0; c < 2; c++) {
            int start = deadRing.lastAvailIdx() & PackedRingDescriptor.VRING_BASE_OFFSET_MASK;
            assertEquals(Virtqueue.POP_OK, deadRing.pop(popped));
            int n = popped.ringDescriptorCount();
            for (int k = 0; k < n; k++) {
                int off = (start + k) % PACKED_SIZE;
                dead.descriptorFetched(
                        deadRing.ringDescAddr(off),
                        deadRing.ringDescLen(off),
                        deadRing.ringDescId(off),
                        deadRing.ringDescFlags(off),
                        k == 0,
                        k == n - 1);
            }
        }
        // the new daemon: QEMU handed the region back; the ring positions come from it
        InflightRegionPacked inflight = new InflightRegionPacked(region, 0, PACKED_SIZE, StoreObserver.NONE);
        InflightPackedRecovery recovery = inflight.start(0, true, off -> 0);
        assertEquals(2, recovery.resubmit().size());
        QueueRunner runner = q.runner(0, PackedRingDescriptor.VRING_BASE_INITIAL);
        runner.vq.lastAvailIdx(
                PackedRingDescriptor.encodeIndex(recovery.lastAvailIdx(), recovery.lastAvailWrapCounter()));
        runner.vq.usedIdx(PackedRingDescriptor.encodeIndex(recovery.usedIdx(), recovery.usedWrapCounter()));
        runner.packedRegion = inflight;
        runner.replayChains = recovery.resubmit().toArray(new InflightChain[0]);
        agent.startQueue(runner);
        q.awaitPackedUsed(2);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(a));
        assertEquals(VIRTIO_BLK_S_OK, statusOf(b));
        assertEquals(
                Set.of(a.head(), b.head()),
                q.used.stream().map(TestGuest.PackedRing.Used::id).collect(Collectors.toSet()));
        assertEquals(2, q.commands(), "each chain resubmitted once");
        assertArrayEquals(dataA, readBdev(8, 4096));
        assertArrayEquals(dataB, readBdev(64, 4096));
        Request c = out(q, 128, pattern(512, 33));
        q.kick();
        q.awaitPackedUsed(3);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(c));
        awaitTrue(() -> inflight.inflightCount() == 0, "all returned to the region's free list");
        assertEquals(3, q.commands());
    }

    private byte[] readBdev(long sector, int length) throws IOException {
        try (RandomAccessFile file =
                new RandomAccessFile(dir.resolve("bdev.img").toFile(), "r")) {
            byte[] data = new byte[length];
            file.seek(sector * 512);
            file.readFully(data);
            return data;
        }
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
        int head = q.add(r(hdr, 16), r(buf, data.length), w(status, 1));
        return new Request(head, status, buf, data.length);
    }

    private Request in(Queue q, long sector, int lengthBytes) {
        long hdr = header(VIRTIO_BLK_T_IN, sector);
        long buf = guest.alloc(lengthBytes, 512);
        long status = status();
        int head = q.add(r(hdr, 16), w(buf, lengthBytes), w(status, 1));
        return new Request(head, status, buf, lengthBytes);
    }

    private Request flush(Queue q) {
        long hdr = header(VIRTIO_BLK_T_FLUSH, 0);
        long status = status();
        int head = q.add(r(hdr, 16), w(status, 1));
        return new Request(head, status, 0, 0);
    }

    /** A DISCARD or WRITE_ZEROES request of {@code ranges}: {sector, num_sectors, flags} each. */
    private Request discardOrWriteZeroes(Queue q, int type, long[][] ranges) {
        long hdr = header(type, 0);
        long data = guest.alloc(16L * ranges.length, 16);
        MemorySegment m = guest.at(data, 16L * ranges.length);
        for (int i = 0; i < ranges.length; i++) {
            m.set(LE_U64, 16L * i, ranges[i][0]);
            m.set(LE_U32, 16L * i + 8, (int) ranges[i][1]);
            m.set(LE_U32, 16L * i + 12, (int) ranges[i][2]);
        }
        long status = status();
        int head = q.add(r(hdr, 16), r(data, 16 * ranges.length), w(status, 1));
        return new Request(head, status, data, 16 * ranges.length);
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

    // ---------------------------------------------------------------- issue #5: statistics

    @Test
    void shouldCountEveryCompletedRequestWithSegmentTimesWhenHistogramAndTraceOn() throws IOException {
        statsRegion = arena.allocate(StatsDescriptor.lengthBytes(1, 64), 64);
        StatsDescriptor.format(statsRegion, 1, 64);
        StatsReader reader = new StatsReader(statsRegion);
        reader.flag(StatsDescriptor.HISTOGRAM_ENABLED_MASK | StatsDescriptor.TRACE_ENABLED_MASK, true);
        start(1, false, true);
        Queue q = queues.get(0);

        out(q, 16, pattern(8192, 1));
        q.kick();
        q.awaitUsed(1);
        in(q, 16, 4096);
        flush(q);
        discardOrWriteZeroes(q, VIRTIO_BLK_T_DISCARD, new long[][] {{64, 8, 0}, {128, 16, 0}});
        q.ring.addChain(r(header(0x7F, 0), 16), w(status(), 1));
        q.kick();
        q.awaitUsed(5);

        awaitTrue(() -> reader.traceLastSeq(0) == 5, "5 trace records");
        IoCounters c = reader.counters(0, System.nanoTime());
        assertEquals(1, c.numWriteOps());
        assertEquals(8192, c.bytesWritten());
        assertEquals(1, c.numReadOps());
        assertEquals(4096, c.bytesRead());
        assertEquals(1, c.numFlushOps());
        assertEquals(1, c.numUnmapOps());
        assertEquals(24 * 512, c.bytesUnmapped());
        assertEquals(1, c.ioErrors(), "the unsupported request");
        assertEquals(0, c.queueDepth());
        assertTrue(c.readLatencyTicks() > 0 && c.writeLatencyTicks() > 0, c.toString());
        assertTrue(c.ioTimeTicks() > 0 && c.weightedIoTimeTicks() >= c.ioTimeTicks(), c.toString());

        for (int segment = 0; segment < StatsDescriptor.SEGMENT_COUNT; segment++) {
            HistogramAccumulator h = new HistogramAccumulator();
            reader.addHistogram(0, segment, StatsDescriptor.OP_WRITE, h);
            assertEquals(1, h.count(), StatsDescriptor.SEGMENT_NAMES.get(segment));
        }
        TraceEvent write = reader.traceEvent(0, 1);
        assertEquals(StatsDescriptor.OP_WRITE, write.op());
        assertEquals(16 * 512, write.offsetBytes());
        assertEquals(8192, write.lengthBytes());
        assertEquals(VIRTIO_BLK_S_OK, write.status());
        long[] times = {
            write.fetchNs(),
            write.submitNs(),
            write.deviceSubmitNs(),
            write.deviceCompleteNs(),
            write.usedNs(),
            write.notifyNs()
        };
        for (int i = 0; i < times.length; i++) {
            assertTrue(times[i] > 0 && (i == 0 || times[i] >= times[i - 1]), Arrays.toString(times));
        }
        // the rest in publish order, which the device decides
        Map<Integer, TraceEvent> byOp = new HashMap<>();
        for (long seq = 2; seq <= 5; seq++) {
            TraceEvent e = reader.traceEvent(0, seq);
            byOp.put(e.op(), e);
        }
        assertEquals(64 * 512, byOp.get(StatsDescriptor.OP_UNMAP).offsetBytes());
        assertEquals(24 * 512, byOp.get(StatsDescriptor.OP_UNMAP).lengthBytes());
        assertEquals(4096, byOp.get(StatsDescriptor.OP_READ).lengthBytes());
        assertEquals(VIRTIO_BLK_S_OK, byOp.get(StatsDescriptor.OP_FLUSH).status());
        assertEquals(VIRTIO_BLK_S_UNSUPP, byOp.get(StatsDescriptor.OP_NONE).status());
    }

    @Test
    void shouldCountWithoutHistogramsOrTraceWhenTheyAreOff() {
        statsRegion = arena.allocate(StatsDescriptor.lengthBytes(1, 64), 64);
        StatsDescriptor.format(statsRegion, 1, 64);
        StatsReader reader = new StatsReader(statsRegion);
        start(1, false, true);
        Queue q = queues.get(0);
        for (int i = 0; i < 3; i++) {
            in(q, 8L * i, 4096);
        }
        q.kick();
        q.awaitUsed(3);

        awaitTrue(() -> reader.counters(0, System.nanoTime()).numReadOps() == 3, "3 reads counted");
        assertEquals(3 * 4096, reader.counters(0, System.nanoTime()).bytesRead());
        assertEquals(0, reader.traceLastSeq(0));
        HistogramAccumulator h = new HistogramAccumulator();
        reader.addHistogram(0, StatsDescriptor.SEGMENT_TOTAL, StatsDescriptor.OP_READ, h);
        assertEquals(0, h.count());
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
    void shouldWriteIoerrIntoStatusAndServeNextWhenDataBufferIsOutsideGuestMemory() {
        start(1, false, true);
        Queue q = queues.get(0);
        long hdr = header(VIRTIO_BLK_T_IN, 0);
        byte[] untouched = pattern(512, 60);
        long data = guest.alloc(512, 512);
        guest.write(data, untouched);
        long status = status();
        // the writable data before the bad buffer is the last segment translated: it must not take the status
        int bad = q.add(r(hdr, 16), w(data, 512), w(TestGuest.REGION_GPA + GUEST_BYTES, 512), w(status, 1));
        q.kick();

        q.awaitUsed(1);
        assertEquals(bad, q.ring.usedId(0));
        assertEquals(1, q.ring.usedLen(0), "the status byte is written");
        assertEquals(VIRTIO_BLK_S_IOERR, guest.readByte(status));
        assertArrayEquals(untouched, guest.read(data, 512), "only the status byte is written");

        Request next = flush(q);
        q.kick();
        q.awaitUsed(2);
        assertUsed(q, 1, next, 1, VIRTIO_BLK_S_OK);
    }

    @Test
    void shouldAnswerWithoutStatusWhenStatusBufferIsOutsideGuestMemory() {
        start(1, false, true);
        Queue q = queues.get(0);
        long hdr = header(VIRTIO_BLK_T_OUT, 0);
        long data = guest.alloc(512, 512);
        int bad = q.add(r(hdr, 16), r(data, 512), w(TestGuest.REGION_GPA + GUEST_BYTES, 1));
        q.kick();

        q.awaitUsed(1);
        assertEquals(bad, q.ring.usedId(0));
        assertEquals(0, q.ring.usedLen(0), "no status byte in guest memory: nothing written");

        Request next = flush(q);
        q.kick();
        q.awaitUsed(2);
        assertUsed(q, 1, next, 1, VIRTIO_BLK_S_OK);
    }

    @Test
    void shouldNotWriteStatusWhenWritableDescriptorLoops() {
        start(1, false, true);
        Queue q = queues.get(0);
        long hdr = header(VIRTIO_BLK_T_IN, 0);
        long status = status();
        int first = q.ring.takeDesc();
        int second = q.ring.takeDesc();
        // second -> second -> ...: the chain has no last descriptor, so no status byte
        q.ring.writeDesc(first, hdr, 16, VIRTQ_DESC_F_NEXT, second);
        q.ring.writeDesc(second, status, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, second);
        q.ring.publish(first);
        q.kick();

        q.awaitUsed(1);
        assertEquals(first, q.ring.usedId(0));
        assertEquals(0, q.ring.usedLen(0));
        assertEquals(STATUS_UNSET, guest.readByte(status));

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
        // as in shouldNotCallWhenGuestSetsNoInterruptWithoutEventIdx: the call decision for it is made after the
        // publish
        agent.barrier();

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
        // the data path publishes used->idx before it reads the flags to decide on a call: clearing the flag before
        // that decision is made would legitimately get a call for the first element
        agent.barrier();

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

    // ---------------------------------------------------------------- packed rings

    @Test
    void shouldReadBackPatternWhenOutThenInOnPackedRing() throws IOException {
        start(1, false, true, 6);
        Queue q = queues.get(0);
        byte[] data = pattern(16384, 21);

        Request write = out(q, 32, data);
        q.kick();
        q.awaitPackedUsed(1);
        assertEquals(write.head(), q.used.get(0).id());
        assertEquals(VIRTIO_BLK_S_OK, statusOf(write));
        assertArrayEquals(data, bdevBytes(32 * 512, 16384));

        // an indirect IN: one ring descriptor, the data gathered into three buffers
        long hdr = header(VIRTIO_BLK_T_IN, 32);
        long[] bufs = {guest.alloc(4096, 512), guest.alloc(8192, 512), guest.alloc(4096, 512)};
        long status = status();
        int id = q.packedRing.addIndirectChain(
                r(hdr, 16), w(bufs[0], 4096), w(bufs[1], 8192), w(bufs[2], 4096), w(status, 1));
        q.kick();
        q.awaitPackedUsed(2);

        TestGuest.PackedRing.Used u = q.used.get(1);
        assertEquals(id, u.id());
        assertEquals(16384 + 1, u.len());
        assertTrue((u.flags() & PackedRingDescriptor.VIRTQ_DESC_F_WRITE) != 0, "used WRITE flag: data written");
        assertEquals(VIRTIO_BLK_S_OK, guest.readByte(status));
        byte[] gathered = new byte[16384];
        System.arraycopy(guest.read(bufs[0], 4096), 0, gathered, 0, 4096);
        System.arraycopy(guest.read(bufs[1], 8192), 0, gathered, 4096, 8192);
        System.arraycopy(guest.read(bufs[2], 4096), 0, gathered, 12288, 4096);
        assertArrayEquals(data, gathered);
    }

    @Test
    void shouldStayInStepOverManyLapsWhenPackedRingIsSmallAndFull() throws IOException {
        // 6 descriptors: two 3-descriptor requests fill the ring; 40 requests make 20 laps
        start(1, false, true, 6);
        Queue q = queues.get(0);
        List<Request> writes = new ArrayList<>();
        for (int round = 0; round < 20; round++) {
            writes.add(out(q, 16L * (2 * round), pattern(4096, 100 + 2 * round)));
            writes.add(out(q, 16L * (2 * round + 1), pattern(4096, 101 + 2 * round)));
            assertEquals(0, q.packedRing.freeDescriptors(), "ring full");
            q.kick();
            q.awaitPackedUsed(2 * round + 2);
        }
        for (int i = 0; i < writes.size(); i++) {
            assertEquals(VIRTIO_BLK_S_OK, statusOf(writes.get(i)), "request " + i);
            assertArrayEquals(pattern(4096, 100 + i), bdevBytes(16L * i * 512, 4096), "request " + i);
        }
        assertEquals(
                writes.stream().map(Request::head).sorted().toList(),
                q.used.stream().map(TestGuest.PackedRing.Used::id).sorted().toList());
    }

    @Test
    void shouldServeTwoPackedQueuesWhenEventIdxNotNegotiated() {
        start(2, false, false, 16);
        Queue a = queues.get(0);
        Queue b = queues.get(1);
        byte[] dataA = pattern(8192, 31);
        byte[] dataB = pattern(8192, 32);
        for (int i = 0; i < 4; i++) {
            out(a, 32L * i, dataA);
            out(b, 256 + 32L * i, dataB);
        }
        a.kick();
        b.kick();
        a.awaitPackedUsed(4);
        b.awaitPackedUsed(4);

        Request readA = in(a, 256, 8192);
        Request readB = in(b, 96, 8192);
        a.kick();
        b.kick();
        a.awaitPackedUsed(5);
        b.awaitPackedUsed(5);
        assertEquals(VIRTIO_BLK_S_OK, statusOf(readA));
        assertEquals(VIRTIO_BLK_S_OK, statusOf(readB));
        assertArrayEquals(dataB, guest.read(readA.dataGpa(), 8192));
        assertArrayEquals(dataA, guest.read(readB.dataGpa(), 8192));
    }

    @Test
    void shouldAnswerIoerrAndServeNextWhenPackedChainIsMalformed() {
        start(1, false, true, 8);
        Queue q = queues.get(0);
        long hdr = header(VIRTIO_BLK_T_OUT, 0);
        long status = status();
        // the data buffer is outside guest memory
        int bad = q.add(r(hdr, 16), r(TestGuest.REGION_GPA + GUEST_BYTES, 512), w(status, 1));
        q.kick();
        q.awaitPackedUsed(1);
        assertEquals(bad, q.used.get(0).id(), "answered, so the driver gets its descriptors back");
        // virtio 1.2 §5.2.6: the status is the chain's last byte; the walk finds it past the bad buffer
        assertEquals(1, q.used.get(0).len());
        assertEquals(VIRTIO_BLK_S_IOERR, guest.readByte(status));

        Request next = flush(q);
        q.kick();
        q.awaitPackedUsed(2);
        assertEquals(next.head(), q.used.get(1).id());
        assertEquals(VIRTIO_BLK_S_OK, statusOf(next));
    }

    @Test
    void shouldReturnBothPositionsWhenPackedQueueStopped() {
        start(1, false, true, 8);
        Queue q = queues.get(0);
        out(q, 0, pattern(4096, 40));
        out(q, 8, pattern(4096, 41));
        q.kick();
        q.awaitPackedUsed(2);
        out(q, 16, pattern(4096, 42));
        q.kick();
        q.awaitPackedUsed(3);

        int base = agent.stopQueue(0);

        // 3 chains of 3 descriptors: offset 9 - 8 = 1 of the second lap (wrap counter 0), for avail and used alike
        assertEquals(1 | 1 << 16, base);
        agent.startQueue(q.runner(0, base));
        Request more = out(q, 64, pattern(4096, 43));
        q.kick();
        q.awaitPackedUsed(4);
        assertEquals(more.head(), q.used.get(3).id());
        assertEquals(VIRTIO_BLK_S_OK, statusOf(more));
    }

    // ---------------------------------------------------------------- discard, write zeroes, write-through

    @Test
    void shouldZeroEveryRangeAndCompleteOnceWhenWriteZeroesHasSegments() throws IOException {
        start(1, false, true);
        Queue q = queues.get(0);
        byte[] data = pattern(65536, 50);
        out(q, 0, data);
        q.kick();
        q.awaitUsed(1);
        int before = q.commands();

        Request zeroes = discardOrWriteZeroes(q, VIRTIO_BLK_T_WRITE_ZEROES, new long[][] {
            {8, 16, 0}, {64, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP}, {100, 0, 0}
        });
        q.kick();
        q.awaitUsed(2);

        assertUsed(q, 1, zeroes, 1, VIRTIO_BLK_S_OK);
        assertEquals(2, q.commands() - before, "one command per non-empty segment");
        byte[] expected = data.clone();
        Arrays.fill(expected, 8 * 512, 24 * 512, (byte) 0);
        Arrays.fill(expected, 64 * 512, 72 * 512, (byte) 0);
        assertArrayEquals(expected, bdevBytes(0, 65536), "the ranges read back as zeroes, the rest is intact");
    }

    @Test
    void shouldReadZeroesWhenRangeDiscardedOnPackedRing() throws IOException {
        start(1, false, true, 16);
        Queue q = queues.get(0);
        byte[] data = pattern(65536, 51);
        out(q, 0, data);
        q.kick();
        q.awaitPackedUsed(1);

        Request discard = discardOrWriteZeroes(q, VIRTIO_BLK_T_DISCARD, new long[][] {{16, 64, 0}, {96, 8, 0}});
        q.kick();
        q.awaitPackedUsed(2);

        assertEquals(discard.head(), q.used.get(1).id());
        assertEquals(VIRTIO_BLK_S_OK, statusOf(discard));
        // the file bdev punches holes: they read back as zeroes
        byte[] expected = data.clone();
        Arrays.fill(expected, 16 * 512, 80 * 512, (byte) 0);
        Arrays.fill(expected, 96 * 512, 104 * 512, (byte) 0);
        assertArrayEquals(expected, bdevBytes(0, 65536));
    }

    @Test
    void shouldAnswerPerSpecAndTouchNothingWhenDiscardOrWriteZeroesIsInvalid() throws IOException {
        start(1, false, true);
        Queue q = queues.get(0);
        byte[] data = pattern(8192, 52);
        out(q, 0, data);
        q.kick();
        q.awaitUsed(1);
        int before = q.commands();
        long[][] tooMany = new long[ControllerAgent.MAX_DISCARD_SEG + 1][];
        for (int i = 0; i < tooMany.length; i++) {
            tooMany[i] = new long[] {i, 1, 0};
        }

        List<Request> unsupp = List.of(
                discardOrWriteZeroes(
                        q, VIRTIO_BLK_T_DISCARD, new long[][] {{0, 8, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP}}),
                discardOrWriteZeroes(q, VIRTIO_BLK_T_WRITE_ZEROES, new long[][] {{0, 8, 2}}),
                // a valid first segment does not run when a later one is refused
                discardOrWriteZeroes(q, VIRTIO_BLK_T_WRITE_ZEROES, new long[][] {{0, 8, 0}, {8, 8, 1L << 31}}));
        List<Request> ioerr = List.of(
                discardOrWriteZeroes(q, VIRTIO_BLK_T_DISCARD, new long[][] {{CAPACITY_SECTORS - 4, 8, 0}}),
                discardOrWriteZeroes(q, VIRTIO_BLK_T_WRITE_ZEROES, new long[][] {{-8, 8, 0}}),
                discardOrWriteZeroes(q, VIRTIO_BLK_T_DISCARD, tooMany));
        q.kick();
        q.awaitUsed(7);

        unsupp.forEach(req -> assertEquals(VIRTIO_BLK_S_UNSUPP, statusOf(req), "head " + req.head()));
        ioerr.forEach(req -> assertEquals(VIRTIO_BLK_S_IOERR, statusOf(req), "head " + req.head()));
        q.usedLens(1, 7).values().forEach(len -> assertEquals(1, len));
        assertEquals(before, q.commands(), "no VirtNvme command for a refused request");
        assertArrayEquals(data, bdevBytes(0, 8192));
    }

    @Test
    void shouldAnswerUnsuppWhenDiscardNotNegotiated() {
        features = BlkDevice.FEATURES & ~VirtioBlk.VIRTIO_BLK_F_DISCARD_MASK;
        start(1, false, true);
        Queue q = queues.get(0);

        Request discard = discardOrWriteZeroes(q, VIRTIO_BLK_T_DISCARD, new long[][] {{0, 8, 0}});
        q.kick();
        q.awaitUsed(1);

        assertUsed(q, 0, discard, 1, VIRTIO_BLK_S_UNSUPP);
    }

    @Test
    void shouldFollowWritesWithFlushOnlyWhenWriteThrough() throws IOException {
        start(1, false, true);
        Queue q = queues.get(0);
        agent.writeback(false);
        int start = q.commands();

        Request write = out(q, 0, pattern(4096, 60));
        q.kick();
        q.awaitUsed(1);
        assertUsed(q, 0, write, 1, VIRTIO_BLK_S_OK);
        assertEquals(2, q.commands() - start, "write-through: WRITE, then FLUSH before the completion");
        assertArrayEquals(pattern(4096, 60), bdevBytes(0, 4096));

        Request zeroes = discardOrWriteZeroes(q, VIRTIO_BLK_T_WRITE_ZEROES, new long[][] {{0, 8, 0}, {16, 8, 0}});
        q.kick();
        q.awaitUsed(2);
        assertUsed(q, 1, zeroes, 1, VIRTIO_BLK_S_OK);
        assertEquals(5, q.commands() - start, "two WRITE_ZEROES, then one FLUSH");

        Request discard = discardOrWriteZeroes(q, VIRTIO_BLK_T_DISCARD, new long[][] {{32, 8, 0}});
        q.kick();
        q.awaitUsed(3);
        assertEquals(6, q.commands() - start, "a discard is not followed by a FLUSH");
        assertEquals(VIRTIO_BLK_S_OK, statusOf(discard));

        agent.writeback(true);
        out(q, 8, pattern(4096, 61));
        q.kick();
        q.awaitUsed(4);
        assertEquals(7, q.commands() - start, "writeback: no FLUSH");
    }

    @Test
    void shouldFlushAfterWritesWhenFlushNotNegotiated() {
        // §5.2.6.2: neither CONFIG_WCE nor FLUSH negotiated (FLUSH offered): writes are stable when they complete
        features = BlkDevice.FEATURES & ~(VirtioBlk.VIRTIO_BLK_F_FLUSH_MASK | VirtioBlk.VIRTIO_BLK_F_CONFIG_WCE_MASK);
        start(1, false, true);
        Queue q = queues.get(0);

        Request write = out(q, 0, pattern(4096, 62));
        q.kick();
        q.awaitUsed(1);

        assertUsed(q, 0, write, 1, VIRTIO_BLK_S_OK);
        assertEquals(2, q.commands());
    }
}
