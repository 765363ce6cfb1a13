package io.vhostd.master.engine;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.Ioctl;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeOpcodes;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;

/**
 * Device engine for hosts where io_uring is unavailable ({@code /proc/sys/kernel/io_uring_disabled}, seccomp, old
 * kernels): one thread polls the queue pairs and hands each command to a small pool of workers doing
 * {@code pread}/{@code pwrite}/{@code fdatasync}/{@code fallocate} (on a block device {@code BLKZEROOUT} /
 * {@code BLKDISCARD}); the polling thread posts every completion (a queue pair has one completion producer). Aligned
 * reads and writes use the bdev's {@code O_DIRECT} fd when it has one, as in {@link IoUringEngine}. Slower than
 * {@link IoUringEngine}; same checks, same results. Each command costs a queue node or two (the pool's queue and the
 * way back); its own state is reused per CID.
 */
public final class ThreadPoolEngine extends PollingEngine<ThreadPoolEngine.PoolSlot> {
    private static final System.Logger LOG = System.getLogger(ThreadPoolEngine.class.getName());

    private static final int WORKERS = 4;

    private final ExecutorService workers;
    /** Commands the workers finished, for the engine thread to complete. */
    private final ConcurrentLinkedQueue<Op> finished = new ConcurrentLinkedQueue<>();

    /** Per attached queue pair: one {@link Op} per CID, made on first use. */
    static final class PoolSlot extends QueueSlot {
        final Op[] ops;

        PoolSlot(int index, QpairBinding binding) {
            super(index, binding);
            this.ops = new Op[qp.depth()];
        }
    }

    /**
     * One command on its way through a worker. The engine thread fills it, a worker runs it and fills in {@link
     * #errno}, the engine thread completes it: never two at once (its CID is in flight meanwhile).
     */
    private final class Op implements Runnable {
        final PoolSlot slot;
        final int cid;
        long[] segmentAddresses = new long[1];
        long[] segmentLengths = new long[1];
        int segmentCount;
        int fd;
        int opcode;
        long offsetBytes;
        long lengthBytes;
        /** WRITE_ZEROES may deallocate ({@code SQE_FLAG_DEALLOCATE}). */
        boolean deallocate;
        /** 0, the errno of the failed call, or -1 for a short transfer. */
        int errno;

        Op(PoolSlot slot, int cid) {
            this.slot = slot;
            this.cid = cid;
        }

        @Override
        public void run() {
            errno = perform(this);
            finished.add(this);
            wake();
        }
    }

    /**
     * Starts the worker pool and the engine thread.
     *
     * @param maxSegments most data segments of one command
     */
    public ThreadPoolEngine(Bdev bdev, int maxSegments) {
        super(bdev, maxSegments, LOG);
        this.workers = Executors.newFixedThreadPool(WORKERS, r -> Thread.ofPlatform()
                .daemon(true)
                .name("pool-" + bdev.name())
                .unstarted(r));
        start();
    }

    @Override
    public String kind() {
        return "thread-pool";
    }

    @Override
    PoolSlot newSlot(int index, QpairBinding binding) {
        return new PoolSlot(index, binding);
    }

    @Override
    void execute(PoolSlot slot, VirtNvmeQueuePair.Command command, int cid) {
        Op op = slot.ops[cid];
        if (op == null) {
            op = new Op(slot, cid);
            slot.ops[cid] = op;
        }
        int opcode = command.opcode();
        long offset = command.offsetBytes();
        long length = Integer.toUnsignedLong(command.lengthBytes());
        boolean transfers = opcode == VirtNvmeOpcodes.NVME_OPC_READ || opcode == VirtNvmeOpcodes.NVME_OPC_WRITE;
        int n = transfers ? command.segmentCount() : 0;
        if (op.segmentAddresses.length < n) {
            op.segmentAddresses = new long[n];
            op.segmentLengths = new long[n];
        }
        System.arraycopy(addresses, 0, op.segmentAddresses, 0, n);
        System.arraycopy(lengths, 0, op.segmentLengths, 0, n);
        op.segmentCount = n;
        op.opcode = opcode;
        op.offsetBytes = offset;
        op.lengthBytes = length;
        op.deallocate = command.isDeallocate();
        op.fd = transfers
                        && bdev.directFd() >= 0
                        && CommandCheck.isAligned(offset, length, addresses, lengths, n, bdev.blockSizeBytes())
                ? bdev.directFd()
                : bdev.fd();
        commandStarted(slot);
        workers.execute(op);
    }

    @Override
    int pollDevice() {
        int n = 0;
        for (Op op = finished.poll(); op != null; op = finished.poll()) {
            n++;
            int opcode = op.opcode;
            boolean transfers = opcode == VirtNvmeOpcodes.NVME_OPC_READ || opcode == VirtNvmeOpcodes.NVME_OPC_WRITE;
            int status =
                    op.errno == 0 ? VirtNvmeStatus.SUCCESS : deviceError(op.slot, opcode, op.errno < 0 ? 0 : op.errno);
            // spec virtnvme.md §7: the result is the bytes transferred by READ and WRITE, 0 for every other opcode
            int result = status == VirtNvmeStatus.SUCCESS && transfers ? (int) op.lengthBytes : 0;
            commandFinished(op.slot, op.cid, status, result);
        }
        return n;
    }

    /**
     * The fallocate(2) mode of a WRITE_ZEROES on a file: PUNCH_HOLE when the command allows deallocation (spec
     * virtnvme.md §5.2 {@code SQE_FLAG_DEALLOCATE}; a hole reads back as zeroes), else ZERO_RANGE; KEEP_SIZE both.
     */
    static int zeroRangeMode(boolean deallocate) {
        return (deallocate ? Fcntl.FALLOC_FL_PUNCH_HOLE : Fcntl.FALLOC_FL_ZERO_RANGE) | Fcntl.FALLOC_FL_KEEP_SIZE;
    }

    /** On a worker: runs {@code op}; returns 0, the errno of the failed call, or -1 for a short transfer. */
    private int perform(Op op) {
        int fd = op.fd;
        long offset = op.offsetBytes;
        long length = op.lengthBytes;
        try {
            switch (op.opcode) {
                case VirtNvmeOpcodes.NVME_OPC_READ, VirtNvmeOpcodes.NVME_OPC_WRITE -> {
                    boolean read = op.opcode == VirtNvmeOpcodes.NVME_OPC_READ;
                    long pos = offset;
                    for (int i = 0; i < op.segmentCount; i++) {
                        long segmentLength = op.segmentLengths[i];
                        MemorySegment buf =
                                MemorySegment.ofAddress(op.segmentAddresses[i]).reinterpret(segmentLength);
                        long done = 0;
                        while (done < segmentLength) {
                            long r = read
                                    ? Unistd.pread(fd, buf.asSlice(done), segmentLength - done, pos + done)
                                    : Unistd.pwrite(fd, buf.asSlice(done), segmentLength - done, pos + done);
                            if (r <= 0) {
                                return -1; // end of file inside the bdev: the file shrank under us
                            }
                            done += r;
                        }
                        pos += segmentLength;
                    }
                }
                // fdatasync works on the file, so it also makes the O_DIRECT fd's writes durable (device cache flush)
                case VirtNvmeOpcodes.NVME_OPC_FLUSH -> Unistd.fdatasync(bdev.fd());
                case VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES -> {
                    if (bdev.blockDevice()) {
                        // BLKZEROOUT lets the kernel unmap when the device zeroes on unmap: DEALLOCATE changes nothing
                        Ioctl.blkZeroout(bdev.fd(), offset, length);
                    } else {
                        // a punched hole reads back as zeroes: the DEALLOCATE form frees the blocks
                        Fcntl.fallocate(bdev.fd(), zeroRangeMode(op.deallocate), offset, length);
                    }
                }
                default -> {
                    if (bdev.blockDevice()) {
                        Ioctl.blkDiscard(bdev.fd(), offset, length);
                    } else {
                        Fcntl.fallocate(
                                bdev.fd(), Fcntl.FALLOC_FL_PUNCH_HOLE | Fcntl.FALLOC_FL_KEEP_SIZE, offset, length);
                    }
                }
            }
            return 0;
        } catch (ErrnoException e) {
            return e.errno();
        }
    }

    @Override
    void onStop() {
        workers.shutdown();
        try {
            // a worker may still write guest memory for a command in flight when the engine thread died
            if (!workers.awaitTermination(5, TimeUnit.SECONDS)) {
                LOG.log(System.Logger.Level.WARNING, "engine " + bdev.name() + ": workers still busy after 5 s");
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }
}
