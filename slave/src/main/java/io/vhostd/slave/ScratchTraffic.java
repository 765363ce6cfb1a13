package io.vhostd.slave;

import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.vhost.virtio.VirtioBlk;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * Both ends of a scratch session's data path, for the standby's warm-up (issue #4, {@link SlaveWarmup}): a virtio-blk
 * driver on one split virtqueue (virtio 1.2 §2.7, with VIRTIO_RING_F_EVENT_IDX) in scratch guest memory, and a
 * VirtNvme executor that completes every command of the queue's queue pair at once with success, touching no data.
 * Between the two the slave's own data-path thread does the real work: fetch, journal, translate, submit, complete,
 * used ring, call. Run long enough, the JIT compiles that path before the slave takes a guest's session over; without
 * it the first ~100 ms after an adoption ran interpreted while ~130 methods compiled (measured with
 * {@code -Xlog:jit+compilation}, session 5).
 *
 * <p>What the compiled code assumes must hold in a guest's session too, or the first real requests deoptimize it: so
 * the data buffers lie in another memory region than the rings and headers, one round of {@link #depth} requests in
 * {@link #BURST_EVERY} is made available at once (the data path fetches full batches, as under a queue depth of 32),
 * the data path's command queue gets work while requests flow ({@code periodic}), and a replacement's resubmission
 * runs ({@link #prefetch}).
 *
 * <p>Single-threaded: the caller's thread plays driver and device, blocking on the queue's call eventfd and the queue
 * pair's SQ eventfd when neither side has work. Layout in guest memory: the ring at {@code descGpa} (descriptors),
 * {@code availGpa}, {@code usedGpa} and the headers at {@code headerGpa} in {@code guest} (guest physical address =
 * offset in it); request {@code i} has its 3 descriptors at 3i .. 3i+2, header (16 bytes) and status (1 byte) at
 * {@code headerGpa + 32 i}, data (4 KiB, never touched here) at {@code dataGpa + 4096 i}.
 */
final class ScratchTraffic {
    private static final ValueLayout.OfShort U16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfInt U32 = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfLong U64 = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** Aligned le16 ring index, for acquire / release. */
    private static final VarHandle U16_ATOMIC =
            ValueLayout.JAVA_SHORT.withOrder(ByteOrder.LITTLE_ENDIAN).varHandle();

    private static final int VIRTQ_DESC_F_NEXT = 1;
    private static final int VIRTQ_DESC_F_WRITE = 2;
    private static final int DATA_BYTES = 4096;
    private static final int SECTORS = 1 << 16;
    /** One round of depth requests in this many goes to the ring at once. */
    private static final int BURST_EVERY = 16;
    /** {@code periodic} runs once per this many completed requests. */
    private static final int PERIODIC_EVERY = 512;

    private final MemorySegment guest;
    private final int size;
    private final long descGpa;
    private final long availGpa;
    private final long usedGpa;
    private final long headerBase;
    private final long dataBase;
    private final int depth;
    private final int kickFd;
    private final int callFd;
    private final VirtNvmeQueuePair executor;
    private final int sqEventFd;
    private final int cqEventFd;
    private final VirtNvmeQueuePair.SubmissionHandler complete;
    /** Completed requests not yet made available again. */
    private final int[] idle;

    private int idleCount;
    private int availIdx;
    private int availPublished;
    private int lastUsed;
    private int posted;
    private int completed;
    private int failed;

    /**
     * @param guest the scratch guest memory, guest physical address 0 at offset 0
     * @param size the queue size (a power of two, at least 3 * depth descriptors)
     * @param headerGpa where the requests' headers and status bytes start in {@code guest}: 32 bytes each
     * @param dataGpa where the requests' data buffers start (4096 bytes each), in a memory region of the session
     * @param depth requests kept in flight
     * @param kickFd the queue's kick eventfd (the driver writes it)
     * @param callFd the queue's call eventfd (the driver waits on it)
     * @param executor the device side of the queue's VirtNvme queue pair
     * @param sqEventFd the queue pair's SQ eventfd (the device waits on it)
     * @param cqEventFd the queue pair's CQ eventfd (the device writes it)
     */
    ScratchTraffic(
            MemorySegment guest,
            int size,
            long descGpa,
            long availGpa,
            long usedGpa,
            long headerGpa,
            long dataGpa,
            int depth,
            int kickFd,
            int callFd,
            VirtNvmeQueuePair executor,
            int sqEventFd,
            int cqEventFd) {
        if (Integer.bitCount(size) != 1 || 3 * depth > size || depth < 1) {
            throw new IllegalArgumentException("queue size " + size + " cannot hold " + depth + " requests");
        }
        this.guest = guest;
        this.size = size;
        this.descGpa = descGpa;
        this.availGpa = availGpa;
        this.usedGpa = usedGpa;
        this.headerBase = headerGpa;
        this.dataBase = dataGpa;
        this.idle = new int[depth];
        this.depth = depth;
        this.kickFd = kickFd;
        this.callFd = callFd;
        this.executor = executor;
        this.sqEventFd = sqEventFd;
        this.cqEventFd = cqEventFd;
        this.complete = command -> {
            // validate(): 0 (success) for a well-formed command, else the NVMe status it deserves
            if (!executor.postCompletion(command.cid(), command.validate(), command.lengthBytes())) {
                // the slave keeps at most depth commands outstanding, so its CQ cannot be full
                throw new IllegalStateException("scratch queue pair: CQ full at cid " + command.cid());
            }
        };
        for (int i = 0; i < depth; i++) {
            writeChain(i);
        }
    }

    /** Completed requests whose status byte was not VIRTIO_BLK_S_OK. */
    int failed() {
        return failed;
    }

    /**
     * Before the session is adopted: makes requests 0 .. {@code n - 1} available and journals them as fetched on
     * {@code queueIndex}, and in flight in the queue's vhost-user {@code inflight} region if there is one (else null),
     * as a slave that died after fetching them would have left them; the adoption resubmits them.
     */
    void prefetch(
            int n,
            io.vhostd.journal.SessionJournal writer,
            int queueIndex,
            io.vhostd.journal.inflight.InflightRegionSplit inflight) {
        if (n > depth || posted != 0) {
            throw new IllegalArgumentException("prefetch " + n + " of depth " + depth + " before any other request");
        }
        for (int i = 0; i < n; i++) {
            post(i);
            writer.requestFetched(queueIndex, 3 * i, i + 1);
            if (inflight != null) {
                inflight.fetched(3 * i);
            }
        }
        U16_ATOMIC.setRelease(guest, availGpa + 2, (short) availIdx);
        availPublished = availIdx;
    }

    /**
     * Runs requests (reads and writes alternating, 4 KiB each) with {@link #depth} in flight until {@code requests}
     * in all (those of {@link #prefetch} included) completed or {@code deadlineNs} (System.nanoTime) passed; then
     * waits, until the same deadline, for those still in flight. Runs {@code periodic} now and then; once {@code stop}
     * says so (asked at the same moments), posts no new request. Returns the requests completed.
     */
    int run(int requests, long deadlineNs, Runnable periodic, java.util.function.BooleanSupplier stop) {
        int limit = requests;
        for (int i = posted; i < depth && posted < limit; i++) {
            post(i);
        }
        publishAndKick();
        try (Poll.PollSet waits = new Poll.PollSet(2)) {
            waits.set(0, callFd, Poll.POLLIN);
            waits.set(1, sqEventFd, Poll.POLLIN);
            while (completed < posted && System.nanoTime() < deadlineNs) {
                boolean progress = serveSubmissions();
                int before = completed;
                progress |= reapUsed(limit, deadlineNs);
                if (before / PERIODIC_EVERY != completed / PERIODIC_EVERY) {
                    periodic.run();
                    if (stop.getAsBoolean()) {
                        // no new request: those in flight complete (the release needs an idle ring)
                        limit = posted;
                    }
                }
                if (progress) {
                    continue;
                }
                // neither side has work: ask both the slave's notifications, look once more, then sleep
                setUsedEvent(lastUsed);
                if (executor.armSubmissionWakeup() || usedIdx() != (lastUsed & 0xFFFF)) {
                    continue;
                }
                if (waits.poll(10) > 0) {
                    for (int i = 0; i < 2; i++) {
                        if ((waits.revents(i) & Poll.POLLIN) != 0) {
                            Eventfd.eventfd_read(waits.fd(i));
                        }
                    }
                }
            }
        }
        return completed;
    }

    /** Device side: completes every submitted command; true if there were any. */
    private boolean serveSubmissions() {
        int n = executor.pollSubmissions(complete, depth);
        if (n > 0 && executor.publishCompletions()) {
            Eventfd.eventfd_write(cqEventFd, 1);
        }
        return n > 0;
    }

    /**
     * Driver side: takes the used elements, then makes the completed requests available again while fewer than
     * {@code limit} were posted; in a burst round only once all of them came back, all at once.
     */
    private boolean reapUsed(int limit, long deadlineNs) {
        int used = usedIdx();
        if (used == (lastUsed & 0xFFFF)) {
            return false;
        }
        while ((lastUsed & 0xFFFF) != used) {
            long elem = usedGpa + 4 + 8L * (lastUsed & (size - 1));
            int request = guest.get(U32, elem) / 3;
            lastUsed++;
            completed++;
            if (guest.get(ValueLayout.JAVA_BYTE, statusGpa(request)) != VirtioBlk.VIRTIO_BLK_S_OK) {
                failed++;
            }
            idle[idleCount++] = request;
        }
        boolean burst = (completed / depth) % BURST_EVERY == BURST_EVERY - 1;
        if (!burst || posted == completed) {
            while (idleCount > 0 && posted < limit && System.nanoTime() < deadlineNs) {
                post(idle[--idleCount]);
            }
            publishAndKick();
        }
        return true;
    }

    /** used->idx, acquired: the used elements below it are visible. */
    private int usedIdx() {
        return Short.toUnsignedInt((short) U16_ATOMIC.getAcquire(guest, usedGpa + 2));
    }

    /** used_event (EVENT_IDX): "call me when used->idx passes this". */
    private void setUsedEvent(int index) {
        U16_ATOMIC.setRelease(guest, availGpa + 4 + 2L * size, (short) index);
        // Dekker with the device's used->idx store: the event index is visible before we look at used->idx again
        VarHandle.fullFence();
    }

    /** Makes request {@code request} available again: a read on even passes, a write on odd, at a moving sector. */
    private void post(int request) {
        long header = headerGpa(request);
        guest.set(U32, header, (posted & 1) == 0 ? VirtioBlk.VIRTIO_BLK_T_IN : VirtioBlk.VIRTIO_BLK_T_OUT);
        guest.set(U64, header + 8, (posted * 8L) % SECTORS);
        guest.set(ValueLayout.JAVA_BYTE, statusGpa(request), (byte) 0xFF);
        // an OUT request's data buffer is device-readable, an IN request's device-writable
        long dataDesc = descGpa + 16L * (3 * request + 1);
        guest.set(U16, dataDesc + 12, (short) (VIRTQ_DESC_F_NEXT | ((posted & 1) == 0 ? VIRTQ_DESC_F_WRITE : 0)));
        guest.set(U16, availGpa + 4 + 2L * (availIdx & (size - 1)), (short) (3 * request));
        availIdx++;
        posted++;
    }

    /** Release-stores avail->idx, then kicks if the device's avail_event asks for it (virtio 1.2 §2.7.10). */
    private void publishAndKick() {
        if (availIdx == availPublished) {
            return;
        }
        int old = availPublished;
        U16_ATOMIC.setRelease(guest, availGpa + 2, (short) availIdx);
        availPublished = availIdx;
        VarHandle.fullFence();
        int availEvent = Short.toUnsignedInt(guest.get(U16, usedGpa + 4 + 8L * size));
        // vring_need_event(event, new, old): (u16)(new - event - 1) < (u16)(new - old)
        if (((availIdx - availEvent - 1) & 0xFFFF) < ((availIdx - old) & 0xFFFF)) {
            Eventfd.eventfd_write(kickFd, 1);
        }
    }

    /** Header, data and status descriptors of request {@code request}: head 3 * request. */
    private void writeChain(int request) {
        long[][] chain = {
            {headerGpa(request), 16, VIRTQ_DESC_F_NEXT},
            {dataGpa(request), DATA_BYTES, VIRTQ_DESC_F_NEXT},
            {statusGpa(request), 1, VIRTQ_DESC_F_WRITE}
        };
        for (int d = 0; d < 3; d++) {
            long at = descGpa + 16L * (3 * request + d);
            guest.set(U64, at, chain[d][0]);
            guest.set(U32, at + 8, (int) chain[d][1]);
            guest.set(U16, at + 12, (short) chain[d][2]);
            guest.set(U16, at + 14, (short) (3 * request + d + 1));
        }
    }

    private long headerGpa(int request) {
        return headerBase + 32L * request;
    }

    private long statusGpa(int request) {
        return headerGpa(request) + 16;
    }

    private long dataGpa(int request) {
        return dataBase + (long) DATA_BYTES * request;
    }
}
