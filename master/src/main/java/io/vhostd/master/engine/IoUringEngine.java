package io.vhostd.master.engine;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.IoUring;
import io.vhostd.shm.linux.IovecArray;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeOpcodes;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

/**
 * Device engine on io_uring: one thread per bdev. Each VirtNvme command becomes one io_uring SQE
 * ({@code IORING_OP_READV}/{@code WRITEV} with an iovec pointing straight into guest memory, {@code FSYNC} with
 * {@code IORING_FSYNC_DATASYNC}, {@code FALLOCATE} for write-zeroes and discard on a file); its CQE becomes one
 * VirtNvme completion. A READ or WRITE goes to the bdev's {@code O_DIRECT} fd when it has one and the command is
 * aligned to the logical block size ({@link CommandCheck#isAligned}), to the buffered fd otherwise; FLUSH syncs the
 * file, which covers writes through either fd. On a block device, write-zeroes and discard are {@code BLKZEROOUT} /
 * {@code BLKDISCARD} ioctls, which io_uring cannot issue: a {@link BlockIoctlWorker} runs them and this thread posts
 * their completions. The engine sleeps in {@code io_uring_enter(GETEVENTS)}: a pending {@code IORING_OP_READ} on
 * every queue pair's submission eventfd (and on the engine's control eventfd and the ioctl worker's eventfd) wakes it,
 * so one wait covers device completions, new commands and finished ioctls. No allocation per read, write or flush.
 */
public final class IoUringEngine implements DeviceEngine {
    private static final System.Logger LOG = System.getLogger(IoUringEngine.class.getName());

    /**
     * How long the thread keeps polling after its last piece of work before it sleeps on eventfds. Polling hides the
     * wake-up latency while a guest is busy; a short budget keeps idle CPU near zero and leaves cores to vCPUs.
     * System property {@code vhostd.poll.spin.us} (microseconds).
     */
    static final long SPIN_NS = Long.getLong("vhostd.poll.spin.us", 20) * 1000;

    /** Most queue pairs one engine serves. */
    public static final int MAX_QPAIRS = 256;

    private static final int RING_ENTRIES = 1024;
    private static final int POLL_BATCH = 64;

    // user_data layout: [63..62] kind | [47..32] queue pair slot | [15..0] cid
    private static final long KIND_COMMAND = 0L;
    private static final long KIND_WAKE = 1L << 62;
    private static final long KIND_CONTROL = 2L << 62;
    private static final long KIND_IOCTL = 3L << 62;
    private static final long KIND_MASK = 3L << 62;

    private final Bdev bdev;
    private final IoUring ring;
    private final int controlEventFd;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment controlReadBuffer;
    private final MemorySegment ioctlReadBuffer;
    /** Runs BLKDISCARD / BLKZEROOUT for a block device; null for files. */
    private final BlockIoctlWorker ioctlWorker;

    private final Thread thread;
    private final ManyToOneConcurrentArrayQueue<Runnable> commands = new ManyToOneConcurrentArrayQueue<>(64);
    private final Slot[] slots = new Slot[MAX_QPAIRS];
    private final AtomicLong completed = new AtomicLong();
    private final long[] addresses;
    private final long[] lengths;
    private volatile boolean running = true;
    private int inflightTotal;
    private final SubmissionHandler submissionHandler = new SubmissionHandler();
    private final CompletionHandler completionHandler = new CompletionHandler();

    /** Per attached queue pair: the binding, an iovec table per CID, and the wake read buffer. */
    private static final class Slot {
        final int index;
        final QpairBinding binding;
        final VirtNvmeQueuePair qp;
        final IovecArray[] iovecs;
        final int[] expectedBytes;
        final MemorySegment wakeBuffer;
        /** Per CID, the ioctl op of a block device's discard / write-zeroes; null for files. */
        final BlockIoctlWorker.Op[] ioctlOps;

        int inflight;
        boolean posted;
        boolean detaching;
        CompletableFuture<Void> detached;

        Slot(int index, QpairBinding binding, Arena arena, boolean blockDevice) {
            this.index = index;
            this.binding = binding;
            this.qp = binding.qpair();
            this.iovecs = new IovecArray[qp.depth()];
            for (int i = 0; i < iovecs.length; i++) {
                iovecs[i] = new IovecArray(qp.maxSegments(), arena);
            }
            this.expectedBytes = new int[qp.depth()];
            this.wakeBuffer = arena.allocate(8, 8);
            this.ioctlOps = blockDevice ? new BlockIoctlWorker.Op[qp.depth()] : null;
            if (blockDevice) {
                for (int i = 0; i < ioctlOps.length; i++) {
                    ioctlOps[i] = new BlockIoctlWorker.Op();
                }
            }
        }
    }

    /**
     * Creates the ring and starts the engine thread.
     *
     * @throws io.vhostd.shm.linux.ErrnoException if io_uring cannot be set up
     */
    public IoUringEngine(Bdev bdev, int maxSegments) {
        this.bdev = bdev;
        this.ring = new IoUring(RING_ENTRIES, 0);
        this.controlEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        this.controlReadBuffer = arena.allocate(8, 8);
        this.ioctlReadBuffer = arena.allocate(8, 8);
        this.ioctlWorker = bdev.blockDevice() ? new BlockIoctlWorker(bdev.name(), bdev.fd()) : null;
        this.addresses = new long[maxSegments];
        this.lengths = new long[maxSegments];
        this.thread =
                Thread.ofPlatform().name("engine-" + bdev.name()).daemon(true).unstarted(this::run);
        this.thread.start();
    }

    @Override
    public String kind() {
        return "io_uring";
    }

    @Override
    public long commandsCompleted() {
        return completed.get();
    }

    @Override
    public void attach(QpairBinding binding) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        enqueue(() -> {
            for (int i = 0; i < slots.length; i++) {
                if (slots[i] == null) {
                    slots[i] = new Slot(i, binding, arena, ioctlWorker != null);
                    armWake(slots[i]);
                    done.complete(null);
                    return;
                }
            }
            done.completeExceptionally(new IllegalStateException("engine " + bdev.name() + " has no free qpair slot"));
        });
        done.join();
    }

    @Override
    public void detach(int qpairId) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        enqueue(() -> {
            for (Slot slot : slots) {
                if (slot != null && slot.qp.qpairId() == qpairId) {
                    slot.detaching = true;
                    slot.detached = done;
                    return;
                }
            }
            done.complete(null);
        });
        done.join();
    }

    private void enqueue(Runnable command) {
        if (!running) {
            throw new IllegalStateException("engine " + bdev.name() + " stopped");
        }
        while (!commands.offer(command)) {
            Thread.onSpinWait();
        }
        Eventfd.eventfd_write(controlEventFd, 1);
    }

    private void armWake(Slot slot) {
        // a read on the eventfd completes when the slave writes it: that is how a sleeping engine wakes up
        ring.prepRead(
                slot.binding.sqEventFd(), slot.wakeBuffer.address(), 8, -1, KIND_WAKE | ((long) slot.index << 32));
    }

    private void run() {
        ring.prepRead(controlEventFd, controlReadBuffer.address(), 8, -1, KIND_CONTROL);
        if (ioctlWorker != null) {
            armIoctlWake();
        }
        long idleSinceNs = 0;
        try {
            while (running || inflightTotal > 0) {
                int work = commands.drain(Runnable::run);
                if (ioctlWorker != null) {
                    work += reapIoctls();
                }
                for (Slot slot : slots) {
                    if (slot != null && !slot.detaching) {
                        work += slot.qp.pollSubmissions(submissionHandler.on(slot), POLL_BATCH);
                    }
                }
                if (ring.pendingSubmissions() > 0) {
                    ring.submit();
                }
                work += ring.reapCompletions(completionHandler);
                publishAndDetach();
                if (work > 0) {
                    idleSinceNs = 0;
                    continue;
                }
                long now = System.nanoTime();
                if (idleSinceNs == 0) {
                    idleSinceNs = now;
                }
                if (now - idleSinceNs < SPIN_NS) {
                    Thread.onSpinWait();
                    continue;
                }
                idleSinceNs = 0;
                if (!armAll()) {
                    continue;
                }
                ring.submitAndWait(1);
            }
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "engine " + bdev.name() + " died", t);
        } finally {
            ring.close();
            Unistd.close(controlEventFd);
            if (ioctlWorker != null) {
                ioctlWorker.close();
            }
        }
    }

    private void armIoctlWake() {
        ring.prepRead(ioctlWorker.doneEventFd(), ioctlReadBuffer.address(), 8, -1, KIND_IOCTL);
    }

    /** Posts the completions of the ioctls the worker finished; returns how many. */
    private int reapIoctls() {
        int n = 0;
        for (BlockIoctlWorker.Op op = ioctlWorker.poll(); op != null; op = ioctlWorker.poll()) {
            n++;
            Slot slot = slots[(int) ((op.userData >>> 32) & 0xFFFF)];
            int cid = (int) (op.userData & 0xFFFF);
            if (slot == null) {
                continue;
            }
            slot.inflight--;
            inflightTotal--;
            if (op.errno != 0) {
                LOG.log(
                        System.Logger.Level.WARNING,
                        "engine " + bdev.name() + ": " + (op.zeroout ? "BLKZEROOUT" : "BLKDISCARD") + " failed, errno "
                                + op.errno);
            }
            complete(slot, cid, op.errno == 0 ? VirtNvmeStatus.SUCCESS : VirtNvmeStatus.DATA_TRANSFER_ERROR, 0);
        }
        return n;
    }

    /** Before sleeping: tell every slave to wake us. Returns false if work arrived meanwhile (do not sleep). */
    private boolean armAll() {
        boolean pending = false;
        for (Slot slot : slots) {
            if (slot != null && !slot.detaching) {
                pending |= slot.qp.armSubmissionWakeup();
            }
        }
        return !pending && commands.isEmpty() && running;
    }

    private void publishAndDetach() {
        for (int i = 0; i < slots.length; i++) {
            Slot slot = slots[i];
            if (slot == null) {
                continue;
            }
            if (slot.posted) {
                slot.posted = false;
                if (slot.qp.publishCompletions()) {
                    Eventfd.eventfd_write(slot.binding.cqEventFd(), 1);
                }
            }
            if (slot.detaching && slot.inflight == 0) {
                // the wake read stays queued on the eventfd; its completion for a freed slot is ignored
                slots[i] = null;
                slot.detached.complete(null);
            }
        }
    }

    private void complete(Slot slot, int cid, int status, int result) {
        while (!slot.qp.postCompletion(cid, status, result)) {
            // the CQ cannot be full while the slave respects depth (it never has more CIDs outstanding); a stuck
            // slave is given a publish and another chance rather than losing a completion
            if (slot.qp.publishCompletions()) {
                Eventfd.eventfd_write(slot.binding.cqEventFd(), 1);
            }
            Thread.onSpinWait();
        }
        slot.posted = true;
        completed.incrementAndGet();
    }

    private final class SubmissionHandler implements VirtNvmeQueuePair.SubmissionHandler {
        private Slot slot;

        SubmissionHandler on(Slot s) {
            this.slot = s;
            return this;
        }

        @Override
        public void onSubmission(VirtNvmeQueuePair.Command command) {
            int cid = command.cid();
            if (cid < 0 || cid >= slot.qp.depth()) {
                return; // peer corruption: a CID outside the queue names no completion slot, so it cannot be answered
            }
            QpairBinding b = slot.binding;
            int status = CommandCheck.check(command, bdev, b.nsid(), b.regions(), addresses, lengths);
            if (status != VirtNvmeStatus.SUCCESS) {
                complete(slot, cid, status, 0);
                return;
            }
            long userData = KIND_COMMAND | ((long) slot.index << 32) | cid;
            boolean queued;
            switch (command.opcode()) {
                case VirtNvmeOpcodes.NVME_OPC_READ, VirtNvmeOpcodes.NVME_OPC_WRITE -> {
                    IovecArray iov = slot.iovecs[cid];
                    int n = command.segmentCount();
                    for (int i = 0; i < n; i++) {
                        iov.set(i, addresses[i], lengths[i]);
                    }
                    slot.expectedBytes[cid] = command.lengthBytes();
                    long offset = command.offsetBytes();
                    int fd = bdev.directFd() >= 0
                                    && CommandCheck.isAligned(
                                            offset,
                                            Integer.toUnsignedLong(command.lengthBytes()),
                                            addresses,
                                            lengths,
                                            n,
                                            bdev.blockSizeBytes())
                            ? bdev.directFd()
                            : bdev.fd();
                    queued = command.opcode() == VirtNvmeOpcodes.NVME_OPC_READ
                            ? ring.prepReadv(fd, iov.address(), n, offset, userData)
                            : ring.prepWritev(fd, iov.address(), n, offset, userData);
                }
                case VirtNvmeOpcodes.NVME_OPC_FLUSH -> {
                    slot.expectedBytes[cid] = 0;
                    queued = ring.prepFsync(bdev.fd(), IoUring.IORING_FSYNC_DATASYNC, userData);
                }
                case VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES -> {
                    slot.expectedBytes[cid] = 0;
                    queued = ioctlWorker != null
                            ? submitIoctl(slot, cid, userData, command, true)
                            : ring.prepFallocate(
                                    bdev.fd(),
                                    Fcntl.FALLOC_FL_ZERO_RANGE | Fcntl.FALLOC_FL_KEEP_SIZE,
                                    command.offsetBytes(),
                                    Integer.toUnsignedLong(command.lengthBytes()),
                                    userData);
                }
                default -> { // NVME_OPC_DATASET_MANAGEMENT: discard
                    slot.expectedBytes[cid] = 0;
                    queued = ioctlWorker != null
                            ? submitIoctl(slot, cid, userData, command, false)
                            : ring.prepFallocate(
                                    bdev.fd(),
                                    Fcntl.FALLOC_FL_PUNCH_HOLE | Fcntl.FALLOC_FL_KEEP_SIZE,
                                    command.offsetBytes(),
                                    Integer.toUnsignedLong(command.lengthBytes()),
                                    userData);
                }
            }
            if (!queued) {
                // SQ full: push what is queued to the kernel and retry once; RING_ENTRIES >= depth makes this rare
                ring.submit();
                complete(slot, cid, VirtNvmeStatus.INTERNAL_ERROR, 0);
                LOG.log(System.Logger.Level.WARNING, "engine " + bdev.name() + ": io_uring SQ full");
                return;
            }
            slot.inflight++;
            inflightTotal++;
        }
    }

    /** Hands a block device's write-zeroes / discard to the ioctl worker; its completion comes back through it. */
    private boolean submitIoctl(Slot slot, int cid, long userData, VirtNvmeQueuePair.Command command, boolean zeroout) {
        BlockIoctlWorker.Op op = slot.ioctlOps[cid];
        op.userData = userData;
        op.zeroout = zeroout;
        op.offsetBytes = command.offsetBytes();
        op.lengthBytes = Integer.toUnsignedLong(command.lengthBytes());
        ioctlWorker.submit(op);
        return true;
    }

    private final class CompletionHandler implements IoUring.CompletionHandler {
        @Override
        public void onCompletion(long userData, int res, int flags) {
            long kind = userData & KIND_MASK;
            if (kind == KIND_CONTROL) {
                if (running) {
                    ring.prepRead(controlEventFd, controlReadBuffer.address(), 8, -1, KIND_CONTROL);
                }
                return;
            }
            if (kind == KIND_IOCTL) {
                // the done ops themselves are reaped from the worker's queue at the top of the loop
                if (running || inflightTotal > 0) {
                    armIoctlWake();
                }
                return;
            }
            int slotIndex = (int) ((userData >>> 32) & 0xFFFF);
            Slot slot = slots[slotIndex];
            if (kind == KIND_WAKE) {
                if (slot != null && !slot.detaching && running) {
                    armWake(slot);
                }
                return;
            }
            int cid = (int) (userData & 0xFFFF);
            if (slot == null) {
                return;
            }
            slot.inflight--;
            inflightTotal--;
            int status;
            int result = 0;
            if (res < 0) {
                status = VirtNvmeStatus.DATA_TRANSFER_ERROR;
                LOG.log(System.Logger.Level.WARNING, "engine " + bdev.name() + ": I/O failed, errno " + (-res));
            } else if (res != slot.expectedBytes[cid] && slot.expectedBytes[cid] != 0) {
                // a short transfer inside the bdev's size does not happen for files and block devices; report it
                status = VirtNvmeStatus.DATA_TRANSFER_ERROR;
                LOG.log(System.Logger.Level.WARNING, "engine " + bdev.name() + ": short transfer " + res);
            } else {
                status = VirtNvmeStatus.SUCCESS;
                result = res;
            }
            complete(slot, cid, status, result);
        }
    }

    @Override
    public void close() {
        if (!running) {
            return;
        }
        CompletableFuture<Void> stopped = new CompletableFuture<>();
        enqueue(() -> {
            running = false;
            stopped.complete(null);
        });
        stopped.join();
        try {
            thread.join(5_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        arena.close();
    }
}
