package io.vhostd.master.engine;

import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Ioctl;
import io.vhostd.shm.linux.Unistd;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.LinkedBlockingQueue;

/**
 * Runs a block device's {@code BLKDISCARD} and {@code BLKZEROOUT} ioctls on a thread of their own, for an engine
 * thread that must not block. io_uring has no generic ioctl: kernel 6.12+ offers {@code IORING_OP_URING_CMD} with
 * {@code BLOCK_URING_CMD_DISCARD} for discard alone (no zero-out), and it needs {@code sqe->addr3}, which the
 * project's io_uring binding does not fill; so both go through this worker.
 *
 * <p>The engine thread {@link #submit submits} an {@link Op} and later {@link #poll polls} it back, completed, and
 * posts the VirtNvme completion itself (a queue pair has one completion producer). The worker writes {@link
 * #doneEventFd()} after each op, so a sleeping engine wakes. Discard and write-zeroes are rare management commands,
 * not the read/write data path: an op costs a queue node and the ioctl binding's argument buffer.
 */
final class BlockIoctlWorker implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(BlockIoctlWorker.class.getName());

    /** One ioctl, reused by its owner (one per queue pair and CID): never two in flight at once. */
    static final class Op {
        long userData;
        boolean zeroout;
        long offsetBytes;
        long lengthBytes;
        /** 0, or the errno the ioctl failed with. */
        int errno;
    }

    private static final Op STOP = new Op();

    private final String name;
    private final int fd;
    private final int doneEventFd;
    private final LinkedBlockingQueue<Op> requests = new LinkedBlockingQueue<>();
    private final ConcurrentLinkedQueue<Op> done = new ConcurrentLinkedQueue<>();
    private final Thread thread;

    /**
     * @param name for the thread name and the log
     * @param fd the block device; the worker does not own it
     */
    BlockIoctlWorker(String name, int fd) {
        this.name = name;
        this.fd = fd;
        this.doneEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        this.thread = Thread.ofPlatform().name("ioctl-" + name).daemon(true).unstarted(this::run);
        thread.start();
    }

    /** Written (+1) after every op completes; the engine waits on it with everything else. */
    int doneEventFd() {
        return doneEventFd;
    }

    /** Queues {@code op}; the engine thread does not touch it again until {@link #poll} returns it. */
    void submit(Op op) {
        requests.add(op);
    }

    /** The next completed op, or null. */
    Op poll() {
        return done.poll();
    }

    private void run() {
        try {
            while (true) {
                Op op = requests.take();
                if (op == STOP) {
                    return;
                }
                try {
                    if (op.zeroout) {
                        Ioctl.blkZeroout(fd, op.offsetBytes, op.lengthBytes);
                    } else {
                        Ioctl.blkDiscard(fd, op.offsetBytes, op.lengthBytes);
                    }
                    op.errno = 0;
                } catch (ErrnoException e) {
                    op.errno = e.errno();
                }
                done.add(op);
                Eventfd.eventfd_write(doneEventFd, 1);
            }
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, "ioctl worker " + name + " died", e);
        }
    }

    /** Stops the thread once the ops queued before have run; then closes the eventfd. */
    @Override
    public void close() {
        requests.add(STOP);
        try {
            thread.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        Unistd.close(doneEventFd);
    }
}
