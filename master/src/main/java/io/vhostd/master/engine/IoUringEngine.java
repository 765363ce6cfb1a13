package io.vhostd.master.engine;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.IoUring;
import io.vhostd.shm.linux.IovecArray;
import io.vhostd.shm.virtnvme.VirtNvmeOpcodes;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

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
 * so one wait covers device completions, new commands and finished ioctls. A queue pair's read is cancelled ({@code
 * IORING_OP_ASYNC_CANCEL}) when it is detached, and the queue pair leaves the engine only once that read's CQE is
 * back, so no read outlives its queue pair. No allocation per read, write or flush.
 */
public final class IoUringEngine extends PollingEngine<IoUringEngine.UringSlot> {
    private static final System.Logger LOG = System.getLogger(IoUringEngine.class.getName());

    private static final int RING_ENTRIES = 1024;

    /** How long a stopping engine waits for the CQEs of what it cancelled and of commands still in flight. */
    private static final long STOP_DRAIN_NS = 5_000_000_000L;

    // user_data: [63..61] kind | [47..32] queue pair slot | [15..0] cid (commands)
    private static final int KIND_SHIFT = 61;
    private static final long KIND_MASK = 7L << KIND_SHIFT;
    private static final long KIND_COMMAND = 0L;
    /** The read parked on a queue pair's submission eventfd. */
    private static final long KIND_WAKE = 1L << KIND_SHIFT;
    /** The read parked on the control eventfd. */
    private static final long KIND_CONTROL = 2L << KIND_SHIFT;
    /** The read parked on the ioctl worker's eventfd. */
    private static final long KIND_IOCTL = 3L << KIND_SHIFT;
    /**
     * An {@code IORING_OP_ASYNC_CANCEL} of one of our parked reads; its slot bits name the queue pair of a wake read,
     * all ones for the control and ioctl reads.
     */
    private static final long KIND_CANCEL = 4L << KIND_SHIFT;

    private static final int SLOT_SHIFT = 32;
    private static final long SLOT_MASK = 0xFFFFL << SLOT_SHIFT;
    private static final long CID_MASK = 0xFFFFL;

    private final IoUring ring;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment controlReadBuffer;
    private final MemorySegment ioctlReadBuffer;
    /** Runs BLKDISCARD / BLKZEROOUT for a block device; null for files. */
    private final BlockIoctlWorker ioctlWorker;

    private final CompletionHandler completionHandler = new CompletionHandler();
    private boolean controlReadPending;
    private boolean ioctlReadPending;
    /** Queue pairs' wake reads submitted and not yet back; written by the engine thread only. */
    private volatile int wakeReadsPending;
    /** Set while stopping: re-arm nothing. */
    private boolean draining;
    /** Set when stopping could not account for every request: the kernel may still write our memory, keep it. */
    private boolean keepMemory;

    private boolean sqFullLogged;

    /** Per attached queue pair: an iovec table and expected byte count per CID, and the wake read's buffer. */
    static final class UringSlot extends QueueSlot {
        /** Made and closed on the engine thread. */
        final Arena arena = Arena.ofConfined();

        final IovecArray[] iovecs;
        final int[] expectedBytes;
        /** Per CID, the opcode of the command in flight: its device error's status depends on it (spec §7.1). */
        final int[] opcodes;

        final MemorySegment wakeBuffer;
        /** Per CID, the ioctl op of a block device's discard / write-zeroes; null for files. */
        final BlockIoctlWorker.Op[] ioctlOps;
        /** The read on the submission eventfd is submitted and its CQE not yet reaped. */
        boolean wakePending;

        UringSlot(int index, QpairBinding binding, boolean blockDevice) {
            super(index, binding);
            try {
                this.iovecs = new IovecArray[qp.depth()];
                for (int i = 0; i < iovecs.length; i++) {
                    iovecs[i] = new IovecArray(qp.maxSegments(), arena);
                }
                this.wakeBuffer = arena.allocate(8, 8);
            } catch (RuntimeException e) {
                arena.close();
                throw e;
            }
            this.expectedBytes = new int[qp.depth()];
            this.opcodes = new int[qp.depth()];
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
     * @param maxSegments most data segments of one command
     * @throws io.vhostd.shm.linux.ErrnoException if io_uring cannot be set up
     */
    public IoUringEngine(Bdev bdev, int maxSegments) {
        super(bdev, maxSegments, LOG);
        try {
            this.ring = new IoUring(RING_ENTRIES, 0);
        } catch (RuntimeException e) {
            abandon();
            arena.close();
            throw e;
        }
        this.controlReadBuffer = arena.allocate(8, 8);
        this.ioctlReadBuffer = arena.allocate(8, 8);
        this.ioctlWorker = bdev.blockDevice() ? new BlockIoctlWorker(bdev.name(), bdev.fd()) : null;
        start();
    }

    @Override
    public String kind() {
        return "io_uring";
    }

    /** Wake reads of queue pairs in the ring now (tests: a detached queue pair leaves none behind). */
    int wakeReadsPending() {
        return wakeReadsPending;
    }

    @Override
    UringSlot newSlot(int index, QpairBinding binding) {
        UringSlot slot = new UringSlot(index, binding, ioctlWorker != null);
        armWake(slot);
        wakeReadsPending++;
        return slot;
    }

    @Override
    void onStart() {
        armControlRead();
        if (ioctlWorker != null) {
            armIoctlRead();
        }
    }

    @Override
    void execute(UringSlot slot, VirtNvmeQueuePair.Command command, int cid) {
        long userData = KIND_COMMAND | ((long) slot.index << SLOT_SHIFT) | cid;
        if (!prepare(slot, command, cid, userData)) {
            // SQ full: hand what is queued to the kernel and try once more; RING_ENTRIES >= depth makes this rare
            ring.submit();
            if (!prepare(slot, command, cid, userData)) {
                if (!sqFullLogged) {
                    sqFullLogged = true;
                    LOG.log(
                            System.Logger.Level.WARNING,
                            "engine " + bdev.name() + ": io_uring SQ full, INTERNAL_ERROR");
                }
                complete(slot, cid, VirtNvmeStatus.INTERNAL_ERROR, 0);
                return;
            }
        }
        commandStarted(slot);
    }

    /** Prepares the SQE of a checked command (or hands it to the ioctl worker); false if the SQ is full. */
    private boolean prepare(UringSlot slot, VirtNvmeQueuePair.Command command, int cid, long userData) {
        slot.opcodes[cid] = command.opcode();
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
                return command.opcode() == VirtNvmeOpcodes.NVME_OPC_READ
                        ? ring.prepReadv(fd, iov.address(), n, offset, userData)
                        : ring.prepWritev(fd, iov.address(), n, offset, userData);
            }
            case VirtNvmeOpcodes.NVME_OPC_FLUSH -> {
                slot.expectedBytes[cid] = 0;
                return ring.prepFsync(bdev.fd(), IoUring.IORING_FSYNC_DATASYNC, userData);
            }
            case VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES -> {
                slot.expectedBytes[cid] = 0;
                return ioctlWorker != null
                        ? submitIoctl(slot, cid, userData, command, true)
                        : ring.prepFallocate(
                                bdev.fd(),
                                ThreadPoolEngine.zeroRangeMode(command.isDeallocate()),
                                command.offsetBytes(),
                                Integer.toUnsignedLong(command.lengthBytes()),
                                userData);
            }
            default -> { // NVME_OPC_DATASET_MANAGEMENT: discard
                slot.expectedBytes[cid] = 0;
                return ioctlWorker != null
                        ? submitIoctl(slot, cid, userData, command, false)
                        : ring.prepFallocate(
                                bdev.fd(),
                                Fcntl.FALLOC_FL_PUNCH_HOLE | Fcntl.FALLOC_FL_KEEP_SIZE,
                                command.offsetBytes(),
                                Integer.toUnsignedLong(command.lengthBytes()),
                                userData);
            }
        }
    }

    /** Hands a block device's write-zeroes / discard to the ioctl worker; its completion comes back through it. */
    private boolean submitIoctl(
            UringSlot slot, int cid, long userData, VirtNvmeQueuePair.Command command, boolean zeroout) {
        BlockIoctlWorker.Op op = slot.ioctlOps[cid];
        op.userData = userData;
        op.zeroout = zeroout;
        op.offsetBytes = command.offsetBytes();
        op.lengthBytes = Integer.toUnsignedLong(command.lengthBytes());
        ioctlWorker.submit(op);
        return true;
    }

    @Override
    int pollDevice() {
        int work = ioctlWorker != null ? reapIoctls() : 0;
        if (ring.pendingSubmissions() > 0) {
            ring.submit();
        }
        return work + ring.reapCompletions(completionHandler);
    }

    /** Finishes the ioctls the worker finished; returns how many. */
    private int reapIoctls() {
        int n = 0;
        for (BlockIoctlWorker.Op op = ioctlWorker.poll(); op != null; op = ioctlWorker.poll()) {
            n++;
            UringSlot slot = slot((int) ((op.userData & SLOT_MASK) >>> SLOT_SHIFT));
            int cid = (int) (op.userData & CID_MASK);
            int opcode =
                    op.zeroout ? VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES : VirtNvmeOpcodes.NVME_OPC_DATASET_MANAGEMENT;
            commandFinished(slot, cid, op.errno == 0 ? VirtNvmeStatus.SUCCESS : deviceError(slot, opcode, op.errno), 0);
        }
        return n;
    }

    @Override
    void sleep() {
        ring.submitAndWait(1);
    }

    @Override
    void onDetach(UringSlot slot) {
        if (slot.wakePending) {
            // the read parked on the slave's eventfd would otherwise stay in the ring after the queue pair left (and
            // eat a wake-up if it came back): cancel it; the queue pair is released once its CQE is reaped
            cancel(wakeUserData(slot), (long) slot.index << SLOT_SHIFT);
        }
    }

    @Override
    boolean canRelease(UringSlot slot) {
        return !slot.wakePending;
    }

    @Override
    void onRelease(UringSlot slot) {
        if (!keepMemory) {
            slot.arena.close();
        }
    }

    @Override
    void onStop() {
        draining = true;
        try {
            // closing the ring does not wait for its requests (the kernel tears it down asynchronously), and a parked
            // read may still write its buffer: cancel our reads and reap every CQE we wait for before memory is freed
            if (controlReadPending) {
                cancel(KIND_CONTROL, SLOT_MASK);
            }
            if (ioctlReadPending) {
                cancel(KIND_IOCTL, SLOT_MASK);
            }
            for (int i = 0; i < MAX_QPAIRS; i++) {
                UringSlot slot = slot(i);
                if (slot != null && slot.wakePending) {
                    cancel(wakeUserData(slot), (long) i << SLOT_SHIFT);
                }
            }
            long startNs = System.nanoTime();
            while (controlReadPending || ioctlReadPending || wakeReadsPending > 0 || inflightTotal() > 0) {
                if (System.nanoTime() - startNs > STOP_DRAIN_NS) {
                    keepMemory = true;
                    LOG.log(
                            System.Logger.Level.ERROR,
                            "engine " + bdev.name() + ": io_uring requests still pending after "
                                    + STOP_DRAIN_NS / 1_000_000 + " ms; their memory is kept");
                    break;
                }
                if (pollDevice() == 0) {
                    Thread.onSpinWait();
                }
            }
        } catch (RuntimeException e) {
            keepMemory = true;
            LOG.log(System.Logger.Level.ERROR, "engine " + bdev.name() + ": draining io_uring failed", e);
        } finally {
            ring.close();
            if (ioctlWorker != null) {
                ioctlWorker.close();
            }
        }
    }

    @Override
    void onClosed() {
        if (!keepMemory) {
            arena.close();
        }
    }

    /** Makes room for one SQE: if the SQ is full, submits what is queued. */
    private void reserveSqe() {
        if (ring.sqSpaceLeft() == 0) {
            ring.submit();
            if (ring.sqSpaceLeft() == 0) {
                throw new IllegalStateException("engine " + bdev.name() + ": io_uring SQ stays full");
            }
        }
    }

    /**
     * Cancels one of our parked reads; its own CQE (not the cancel's) says when the kernel is done with its buffer.
     *
     * @param slotBits the queue pair slot of a wake read, shifted into place, or {@link #SLOT_MASK} for the others
     */
    private void cancel(long targetUserData, long slotBits) {
        reserveSqe();
        ring.prepCancel(targetUserData, 0, KIND_CANCEL | slotBits);
    }

    private static long wakeUserData(UringSlot slot) {
        return KIND_WAKE | ((long) slot.index << SLOT_SHIFT);
    }

    private void armWake(UringSlot slot) {
        // a read on the eventfd completes when the slave writes it: that is how a sleeping engine wakes up
        reserveSqe();
        ring.prepRead(slot.binding.sqEventFd(), slot.wakeBuffer.address(), 8, -1, wakeUserData(slot));
        slot.wakePending = true;
    }

    private void armControlRead() {
        reserveSqe();
        ring.prepRead(controlEventFd, controlReadBuffer.address(), 8, -1, KIND_CONTROL);
        controlReadPending = true;
    }

    private void armIoctlRead() {
        reserveSqe();
        ring.prepRead(ioctlWorker.doneEventFd(), ioctlReadBuffer.address(), 8, -1, KIND_IOCTL);
        ioctlReadPending = true;
    }

    private final class CompletionHandler implements IoUring.CompletionHandler {
        @Override
        public void onCompletion(long userData, int res, int flags) {
            long kind = userData & KIND_MASK;
            if (kind == KIND_COMMAND) {
                onCommand(userData, res);
            } else if (kind == KIND_WAKE) {
                UringSlot slot = slot((int) ((userData & SLOT_MASK) >>> SLOT_SHIFT));
                slot.wakePending = false;
                if (!slot.detaching && running() && !draining) {
                    armWake(slot); // one read out, one in: the count does not move
                } else {
                    wakeReadsPending--;
                }
            } else if (kind == KIND_CONTROL) {
                controlReadPending = false;
                if (running() && !draining) {
                    armControlRead();
                }
            } else if (kind == KIND_IOCTL) {
                // the done ops themselves are reaped from the worker's queue in pollDevice
                ioctlReadPending = false;
                if ((running() || inflightTotal() > 0) && !draining) {
                    armIoctlRead();
                }
            } else if (kind == KIND_CANCEL && res == -Errno.EALREADY) {
                // the read is running and cannot be cancelled: a write of its eventfd completes it
                long slotBits = userData & SLOT_MASK;
                UringSlot slot = slotBits == SLOT_MASK ? null : slot((int) (slotBits >>> SLOT_SHIFT));
                if (slot != null && slot.wakePending) {
                    Eventfd.eventfd_write(slot.binding.sqEventFd(), 1);
                }
            }
        }

        private void onCommand(long userData, int res) {
            UringSlot slot = slot((int) ((userData & SLOT_MASK) >>> SLOT_SHIFT));
            int cid = (int) (userData & CID_MASK);
            int expected = slot.expectedBytes[cid];
            int status;
            int result = 0;
            if (res < 0) {
                status = deviceError(slot, slot.opcodes[cid], -res);
            } else if (res != expected && expected != 0) {
                // a short transfer inside the bdev's size does not happen for files and block devices: the file shrank
                status = deviceError(slot, slot.opcodes[cid], 0);
            } else {
                status = VirtNvmeStatus.SUCCESS;
                result = res;
            }
            commandFinished(slot, cid, status, result);
        }
    }
}
