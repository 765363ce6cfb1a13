package io.vhostd.slave;

import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_IOERR;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_OK;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_UNSUPP;

import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeOpcodes;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import io.vhostd.vhost.virtio.DescriptorChain;
import io.vhostd.vhost.virtio.GuestMemory;
import io.vhostd.vhost.virtio.GuestMemoryRegion;
import io.vhostd.vhost.virtio.SplitVirtqueue;
import io.vhostd.vhost.virtio.VirtioBlk;
import io.vhostd.vhost.virtio.VirtioBlkRequest;
import java.lang.foreign.ValueLayout;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

/**
 * The data path of one controller: one thread that fetches virtio-blk requests from every started virtqueue, turns
 * reads, writes and flushes into VirtNvme commands (guest buffers named by region id and offset: no copy), answers
 * GET_ID itself, and on each VirtNvme completion writes the status byte, adds the used element and notifies the
 * guest (event idx permitting). Adaptive: it spins while there is work and for a short while after, then enables
 * guest kicks, arms the completion wakeup and sleeps in poll(2) on the kick and completion eventfds.
 *
 * <p>Everything read from guest memory is untrusted (see {@link SplitVirtqueue}, {@link VirtioBlkRequest}); a bad
 * request gets {@code VIRTIO_BLK_S_IOERR} and the queue keeps going. The control thread never touches a ring: it hands
 * start/stop to this thread through a queue. No allocation per request.
 */
final class ControllerAgent implements Runnable {
    private static final System.Logger LOG = System.getLogger(ControllerAgent.class.getName());

    /**
     * How long the thread keeps polling after its last piece of work before it sleeps on eventfds. Polling hides the
     * wake-up latency while a guest is busy; a short budget keeps idle CPU near zero and leaves cores to vCPUs.
     * System property {@code vhostd.poll.spin.us} (microseconds).
     */
    static final long SPIN_NS = Long.getLong("vhostd.poll.spin.us", 20) * 1000;

    /**
     * The polling budget while requests are at the device: their completions come within the device's latency (µs),
     * so waiting for them by polling saves the completion eventfd wake-up; waiting for the guest (nothing in flight)
     * uses the short {@link #SPIN_NS}. System property {@code vhostd.poll.inflight.spin.us} (microseconds).
     */
    static final long INFLIGHT_SPIN_NS = Long.getLong("vhostd.poll.inflight.spin.us", 200) * 1000;

    private static final int FETCH_BATCH = 32;
    private static final int SLEEP_TIMEOUT_MS = 1000;

    private final String name;
    private final int nsid;
    private final long capacityBytes;
    private final boolean readOnly;
    private final byte[] serial;
    private final int maxSegments;
    private final QueueRunner[] queues;
    private final int wakeEventFd;
    private final ManyToOneConcurrentArrayQueue<Runnable> commands = new ManyToOneConcurrentArrayQueue<>(256);
    private final DescriptorChain chain;
    private final VirtioBlkRequest request;
    private final int[] regionIds;
    private final long[] regionOffsets;
    private final int[] segmentLengths;
    private final CompletionHandler completionHandler = new CompletionHandler();
    private final Poll.PollSet pollSet;
    private final int[] pollQueue;
    private final AtomicLong requests = new AtomicLong();
    private final AtomicLong errors = new AtomicLong();
    private volatile boolean running = true;
    private final Thread thread;

    ControllerAgent(
            String name,
            int nsid,
            long capacityBytes,
            boolean readOnly,
            byte[] serial,
            int numQueues,
            int maxSegments) {
        this.name = name;
        this.nsid = nsid;
        this.capacityBytes = capacityBytes;
        this.readOnly = readOnly;
        this.serial = serial;
        this.maxSegments = maxSegments;
        this.queues = new QueueRunner[numQueues];
        this.wakeEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        this.chain = new DescriptorChain(maxSegments);
        this.request = new VirtioBlkRequest(maxSegments);
        this.regionIds = new int[maxSegments];
        this.regionOffsets = new long[maxSegments];
        this.segmentLengths = new int[maxSegments];
        this.pollSet = new Poll.PollSet(1 + 2 * numQueues);
        this.pollQueue = new int[1 + 2 * numQueues];
        this.thread = Thread.ofPlatform().name("ctrl-" + name).daemon(true).unstarted(this);
    }

    void start() {
        thread.start();
    }

    long requests() {
        return requests.get();
    }

    long errors() {
        return errors.get();
    }

    /** Starts processing queue {@code runner.index}; returns when the data-path thread took it. */
    void startQueue(QueueRunner runner) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        enqueue(() -> {
            if (queues[runner.index] != null) {
                done.completeExceptionally(new IllegalStateException("queue " + runner.index + " already started"));
                return;
            }
            queues[runner.index] = runner;
            done.complete(null);
        });
        done.join();
    }

    /**
     * Stops fetching from queue {@code index}, waits until its in-flight requests completed and their used elements
     * are published, and returns the next avail index (vhost-user GET_VRING_BASE); -1 if the queue was not started.
     */
    int stopQueue(int index) {
        CompletableFuture<Integer> done = new CompletableFuture<>();
        enqueue(() -> {
            QueueRunner q = index >= 0 && index < queues.length ? queues[index] : null;
            if (q == null) {
                done.complete(-1);
                return;
            }
            q.stopping = true;
            q.stopped = done;
        });
        return done.join();
    }

    /** State of the started queues, for {@code vhost_get_controllers}; -1 entries for queues not started. */
    QueueRunner queue(int index) {
        return queues[index];
    }

    private void enqueue(Runnable command) {
        if (!running) {
            throw new IllegalStateException("controller " + name + " stopped");
        }
        while (!commands.offer(command)) {
            Thread.onSpinWait();
        }
        Eventfd.eventfd_write(wakeEventFd, 1);
    }

    @Override
    public void run() {
        long idleSinceNs = 0;
        try {
            while (running) {
                int work = commands.drain(Runnable::run);
                for (QueueRunner q : queues) {
                    if (q != null) {
                        work += process(q);
                    }
                }
                if (work > 0) {
                    idleSinceNs = 0;
                    continue;
                }
                long now = System.nanoTime();
                if (idleSinceNs == 0) {
                    idleSinceNs = now;
                }
                if (now - idleSinceNs < (anyInflight() ? INFLIGHT_SPIN_NS : SPIN_NS)) {
                    Thread.onSpinWait();
                    continue;
                }
                idleSinceNs = 0;
                sleep();
            }
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "controller " + name + ": data path died", t);
        }
    }

    private boolean anyInflight() {
        for (QueueRunner q : queues) {
            if (q != null && q.inflightCount > 0) {
                return true;
            }
        }
        return false;
    }

    private void sleep() {
        boolean pending = !commands.isEmpty();
        int n = 0;
        pollSet.set(n, wakeEventFd, Poll.POLLIN);
        pollQueue[n++] = -1;
        for (QueueRunner q : queues) {
            if (q == null) {
                continue;
            }
            pending |= q.qp.armCompletionWakeup();
            pollSet.set(n, q.cqEventFd, Poll.POLLIN);
            pollQueue[n++] = q.index;
            if (!q.stopping && q.kickFd >= 0) {
                try {
                    pending |= q.vq.enableNotifications();
                } catch (IllegalStateException e) {
                    // enableNotifications re-reads avail->idx, which the guest may have broken since the last fetch
                    markBroken(q, e);
                    pending = true;
                    continue;
                }
                pollSet.set(n, q.kickFd, Poll.POLLIN);
                pollQueue[n++] = q.index;
            }
        }
        if (!pending) {
            pollSet.size(n);
            pollSet.poll(SLEEP_TIMEOUT_MS);
            for (int i = 0; i < n; i++) {
                if ((pollSet.revents(i) & Poll.POLLIN) != 0) {
                    // readable, so the read does not block even on a blocking eventfd shared with QEMU
                    Eventfd.eventfd_read(pollSet.fd(i));
                }
            }
        }
        for (QueueRunner q : queues) {
            if (q != null && !q.stopping) {
                // busy again: the guest need not kick while we poll the avail ring
                q.vq.disableNotifications();
            }
        }
    }

    private int process(QueueRunner q) {
        int work = q.qp.pollCompletions(completionHandler.on(q));
        int submitted = 0;
        if (!q.stopping) {
            submitted = fetch(q);
            work += submitted;
        }
        if (submitted > 0 && q.qp.publishSubmissions()) {
            Eventfd.eventfd_write(q.sqEventFd, 1);
        }
        if (q.usedPending) {
            q.usedPending = false;
            q.vq.publishUsed();
            if (q.vq.needsNotification() && q.callFd >= 0) {
                Eventfd.eventfd_write(q.callFd, 1);
            }
        }
        // a queue stopped because its ring broke stays here, not fetching, until stopQueue (GET_VRING_BASE) claims it
        if (q.stopping && q.stopped != null && q.inflightCount == 0) {
            queues[q.index] = null;
            q.stopped.complete(q.vq.lastAvailIdx());
        }
        return work;
    }

    /**
     * The guest moved avail->idx impossibly far: the ring is broken. Stop fetching from it; its in-flight requests still
     * complete, and it stays started so that stopQueue (GET_VRING_BASE) answers the avail index it stopped at.
     */
    private void markBroken(QueueRunner q, IllegalStateException e) {
        errors.incrementAndGet();
        LOG.log(
                System.Logger.Level.ERROR,
                "controller " + name + " queue " + q.index + ": " + e.getMessage()
                        + "; queue stopped until the front-end resets it");
        q.stopping = true;
    }

    /** Fetches up to {@link #FETCH_BATCH} requests; returns how many were taken from the avail ring. */
    private int fetch(QueueRunner q) {
        int taken = 0;
        while (taken < FETCH_BATCH) {
            int r;
            try {
                r = q.vq.pop(chain);
            } catch (IllegalStateException e) {
                markBroken(q, e);
                return taken;
            }
            if (r == SplitVirtqueue.POP_EMPTY) {
                break;
            }
            taken++;
            requests.incrementAndGet();
            int head = chain.head();
            if (r == SplitVirtqueue.POP_MALFORMED) {
                // parse what there is, only to find the status byte to write IOERR into
                request.parse(chain, q.memory);
                fail(q, head, "malformed descriptor chain: " + chain.errorName());
                continue;
            }
            if (q.inflight[head]) {
                // a head that is still in flight cannot be in the avail ring twice: guest bug; do not answer twice
                errors.incrementAndGet();
                continue;
            }
            if (!request.parse(chain, q.memory)) {
                fail(q, head, "malformed virtio-blk request: " + request.errorName());
                continue;
            }
            submit(q, head);
        }
        return taken;
    }

    private void submit(QueueRunner q, int head) {
        int type = request.type();
        switch (type) {
            case VirtioBlk.VIRTIO_BLK_T_IN, VirtioBlk.VIRTIO_BLK_T_OUT -> {
                long length = request.dataLengthBytes();
                long sector = request.sector();
                // untrusted: sector and length must stay inside the bdev (overflow-safe)
                if (length <= 0
                        || length % VirtioBlk.SECTOR_SIZE != 0
                        || length > Integer.MAX_VALUE
                        || sector < 0
                        || sector > capacityBytes / VirtioBlk.SECTOR_SIZE
                        || length > capacityBytes - sector * VirtioBlk.SECTOR_SIZE) {
                    fail(q, head, "request outside the disk: sector " + sector + " length " + length);
                    return;
                }
                if (type == VirtioBlk.VIRTIO_BLK_T_OUT && readOnly) {
                    fail(q, head, null);
                    return;
                }
                int segments = request.dataSegmentCount();
                for (int i = 0; i < segments; i++) {
                    regionIds[i] = request.dataRegionId(i);
                    regionOffsets[i] = request.dataRegionOffset(i);
                    segmentLengths[i] = request.dataLengthBytes(i);
                }
                int opcode = type == VirtioBlk.VIRTIO_BLK_T_IN
                        ? VirtNvmeOpcodes.NVME_OPC_READ
                        : VirtNvmeOpcodes.NVME_OPC_WRITE;
                if (!q.qp.submit(
                        opcode,
                        0,
                        head,
                        nsid,
                        sector * VirtioBlk.SECTOR_SIZE,
                        (int) length,
                        segments,
                        regionIds,
                        regionOffsets,
                        segmentLengths)) {
                    fail(q, head, "VirtNvme submission queue full");
                    return;
                }
                track(q, head, type == VirtioBlk.VIRTIO_BLK_T_IN ? (int) length + 1 : 1);
            }
            case VirtioBlk.VIRTIO_BLK_T_FLUSH -> {
                if (!q.qp.submit(
                        VirtNvmeOpcodes.NVME_OPC_FLUSH,
                        0,
                        head,
                        nsid,
                        0,
                        0,
                        0,
                        regionIds,
                        regionOffsets,
                        segmentLengths)) {
                    fail(q, head, "VirtNvme submission queue full");
                    return;
                }
                track(q, head, 1);
            }
            case VirtioBlk.VIRTIO_BLK_T_GET_ID -> {
                int written = request.writeData(q.memory, serial);
                request.writeStatus(q.memory, VIRTIO_BLK_S_OK);
                q.vq.pushUsed(head, written + 1);
                q.usedPending = true;
            }
            default -> {
                request.writeStatus(q.memory, VIRTIO_BLK_S_UNSUPP);
                q.vq.pushUsed(head, 1);
                q.usedPending = true;
            }
        }
    }

    private void track(QueueRunner q, int head, int usedLength) {
        q.statusGpa[head] = request.statusGpa();
        q.usedLengthBytes[head] = usedLength;
        q.inflight[head] = true;
        q.inflightCount++;
    }

    /** Completes a request the device will not execute: IOERR if the status byte was found, then the used element. */
    private void fail(QueueRunner q, int head, String why) {
        errors.incrementAndGet();
        if (why != null && errors.get() <= 16) {
            // logged for the first errors only (a hostile guest must not flood the log); all are counted
            LOG.log(System.Logger.Level.WARNING, "controller " + name + " queue " + q.index + ": " + why);
        }
        if (head < 0) {
            return; // no valid head: nothing can be returned to the guest for it
        }
        boolean hasStatus = request.hasStatus();
        if (hasStatus) {
            request.writeStatus(q.memory, VIRTIO_BLK_S_IOERR);
        }
        q.vq.pushUsed(head, hasStatus ? 1 : 0);
        q.usedPending = true;
    }

    private final class CompletionHandler implements VirtNvmeQueuePair.CompletionHandler {
        private QueueRunner q;

        CompletionHandler on(QueueRunner queue) {
            this.q = queue;
            return this;
        }

        @Override
        public void onCompletion(int cid, int statusField, int result) {
            if (cid < 0 || cid >= q.inflight.length || !q.inflight[cid]) {
                errors.incrementAndGet();
                return; // not ours: a peer bug; nothing to answer
            }
            q.inflight[cid] = false;
            q.inflightCount--;
            boolean ok = statusField == VirtNvmeStatus.SUCCESS;
            if (!ok) {
                errors.incrementAndGet();
                if (errors.get() <= 16) {
                    LOG.log(
                            System.Logger.Level.WARNING,
                            "controller " + name + " queue " + q.index + ": device error "
                                    + VirtNvmeStatus.name(statusField));
                }
            }
            writeStatusByte(q.memory, q.statusGpa[cid], ok ? VIRTIO_BLK_S_OK : VIRTIO_BLK_S_IOERR);
            q.vq.pushUsed(cid, ok ? q.usedLengthBytes[cid] : 1);
            q.usedPending = true;
        }
    }

    /** Writes one byte of guest memory without allocating (the GPA was validated when the request was parsed). */
    private static void writeStatusByte(GuestMemory memory, long gpa, int status) {
        int r = memory.findRegion(gpa, 1);
        if (r < 0) {
            return;
        }
        GuestMemoryRegion region = memory.region(r);
        region.mapping().set(ValueLayout.JAVA_BYTE, gpa - region.guestPhysAddr(), (byte) status);
    }

    void close() {
        running = false;
        Eventfd.eventfd_write(wakeEventFd, 1);
        try {
            thread.join(2_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        pollSet.close();
        Unistd.close(wakeEventFd);
    }
}
