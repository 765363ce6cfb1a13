package io.vhostd.master.engine;

import io.vhostd.master.bdev.Bdev;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.Ioctl;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeOpcodes;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import java.lang.foreign.MemorySegment;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

/**
 * Device engine for hosts where io_uring is unavailable ({@code /proc/sys/kernel/io_uring_disabled}, seccomp, old
 * kernels): one thread polls the queue pairs and hands each command to a small pool of workers doing
 * {@code pread}/{@code pwrite}/{@code fdatasync}/{@code fallocate} (on a block device {@code BLKZEROOUT} /
 * {@code BLKDISCARD}); the polling thread posts every completion (a queue pair has one completion producer). Aligned
 * reads and writes use the bdev's {@code O_DIRECT} fd when it has one, as in {@link IoUringEngine}. Slower than
 * {@link IoUringEngine}; same checks, same results.
 */
public final class ThreadPoolEngine implements DeviceEngine {
    private static final System.Logger LOG = System.getLogger(ThreadPoolEngine.class.getName());

    /**
     * How long the thread keeps polling after its last piece of work before it sleeps on eventfds. Polling hides the
     * wake-up latency while a guest is busy; a short budget keeps idle CPU near zero and leaves cores to vCPUs.
     * System property {@code vhostd.poll.spin.us} (microseconds).
     */
    static final long SPIN_NS = Long.getLong("vhostd.poll.spin.us", 20) * 1000;

    private static final int WORKERS = 4;

    private final Bdev bdev;
    private final int maxSegments;
    private final int wakeEventFd;
    private final ExecutorService workers;
    private final Thread thread;
    private final ManyToOneConcurrentArrayQueue<Runnable> commands = new ManyToOneConcurrentArrayQueue<>(4096);
    private final java.util.List<Slot> slots = new java.util.ArrayList<>();
    private final AtomicLong completed = new AtomicLong();
    private volatile boolean running = true;
    private int inflightTotal;

    private static final class Slot {
        final QpairBinding binding;
        int inflight;
        boolean posted;
        CompletableFuture<Void> detached;

        Slot(QpairBinding binding) {
            this.binding = binding;
        }
    }

    public ThreadPoolEngine(Bdev bdev, int maxSegments) {
        this.bdev = bdev;
        this.maxSegments = maxSegments;
        this.wakeEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
        this.workers = Executors.newFixedThreadPool(WORKERS, r -> Thread.ofPlatform()
                .daemon(true)
                .name("pool-" + bdev.name())
                .unstarted(r));
        this.thread =
                Thread.ofPlatform().name("engine-" + bdev.name()).daemon(true).unstarted(this::run);
        thread.start();
    }

    @Override
    public String kind() {
        return "thread-pool";
    }

    @Override
    public long commandsCompleted() {
        return completed.get();
    }

    @Override
    public void attach(QpairBinding binding) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        enqueueControl(() -> {
            slots.add(new Slot(binding));
            done.complete(null);
        });
        done.join();
    }

    @Override
    public void detach(int qpairId) {
        CompletableFuture<Void> done = new CompletableFuture<>();
        enqueueControl(() -> {
            for (Slot slot : slots) {
                if (slot.binding.qpair().qpairId() == qpairId) {
                    slot.detached = done;
                    return;
                }
            }
            done.complete(null);
        });
        done.join();
    }

    /** attach/detach: refused once the engine stopped, whose thread would never run the command. */
    private void enqueueControl(Runnable command) {
        if (!running) {
            throw new IllegalStateException("engine " + bdev.name() + " stopped");
        }
        enqueue(command);
    }

    /** Also used by workers to hand completions back, which must go through while a closing engine drains. */
    private void enqueue(Runnable command) {
        while (!commands.offer(command)) {
            Thread.onSpinWait();
        }
        Eventfd.eventfd_write(wakeEventFd, 1);
    }

    private void run() {
        long idleSinceNs = 0;
        long[] addresses = new long[maxSegments];
        long[] lengths = new long[maxSegments];
        try (Poll.PollSet pollSet = new Poll.PollSet(1 + 256)) {
            while (running || inflightTotal > 0) {
                int work = commands.drain(Runnable::run);
                for (Slot slot : slots) {
                    if (slot.detached != null) {
                        continue;
                    }
                    work += slot.binding.qpair().pollSubmissions(cmd -> dispatch(slot, cmd, addresses, lengths), 64);
                }
                for (int i = slots.size() - 1; i >= 0; i--) {
                    Slot slot = slots.get(i);
                    if (slot.posted) {
                        slot.posted = false;
                        if (slot.binding.qpair().publishCompletions()) {
                            Eventfd.eventfd_write(slot.binding.cqEventFd(), 1);
                        }
                    }
                    if (slot.detached != null && slot.inflight == 0) {
                        slots.remove(i);
                        slot.detached.complete(null);
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
                if (now - idleSinceNs < SPIN_NS) {
                    Thread.onSpinWait();
                    continue;
                }
                idleSinceNs = 0;
                boolean pending = !commands.isEmpty();
                pollSet.set(0, wakeEventFd, Poll.POLLIN);
                int n = 1;
                for (Slot slot : slots) {
                    if (slot.detached == null) {
                        pending |= slot.binding.qpair().armSubmissionWakeup();
                        pollSet.set(n++, slot.binding.sqEventFd(), Poll.POLLIN);
                    }
                }
                if (pending || !running) {
                    continue;
                }
                pollSet.size(n);
                pollSet.poll(1000);
                for (int i = 0; i < n; i++) {
                    if ((pollSet.revents(i) & Poll.POLLIN) != 0 && pollSet.fd(i) != wakeEventFd) {
                        // the slave's eventfd is readable, so this read does not block; only this thread reads it
                        Eventfd.eventfd_read(pollSet.fd(i));
                    }
                }
                Eventfd.eventfd_read(wakeEventFd);
            }
        } catch (Throwable t) {
            LOG.log(System.Logger.Level.ERROR, "engine " + bdev.name() + " died", t);
        } finally {
            workers.shutdown();
            try {
                // a worker hands a completion back with offer, then a write of wakeEventFd: the last offer can end
                // this loop before that write, which must not hit a closed (or reused) fd number
                workers.awaitTermination(5, TimeUnit.SECONDS);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
            }
            Unistd.close(wakeEventFd);
        }
    }

    private void dispatch(Slot slot, VirtNvmeQueuePair.Command command, long[] addresses, long[] lengths) {
        int cid = command.cid();
        if (cid < 0 || cid >= slot.binding.qpair().depth()) {
            return; // peer corruption: no completion slot to answer in
        }
        QpairBinding b = slot.binding;
        int status = CommandCheck.check(command, bdev, b.nsid(), b.regions(), addresses, lengths);
        if (status != VirtNvmeStatus.SUCCESS) {
            post(slot, cid, status, 0);
            return;
        }
        int opcode = command.opcode();
        long offset = command.offsetBytes();
        long length = Integer.toUnsignedLong(command.lengthBytes());
        boolean transfers = opcode == VirtNvmeOpcodes.NVME_OPC_READ || opcode == VirtNvmeOpcodes.NVME_OPC_WRITE;
        int n = transfers ? command.segmentCount() : 0;
        // spec virtnvme.md §7: the result is the bytes transferred by READ and WRITE, 0 for every other opcode
        int transferredBytes = transfers ? (int) length : 0;
        int fd = transfers
                        && bdev.directFd() >= 0
                        && CommandCheck.isAligned(offset, length, addresses, lengths, n, bdev.blockSizeBytes())
                ? bdev.directFd()
                : bdev.fd();
        long[] a = java.util.Arrays.copyOf(addresses, n);
        long[] l = java.util.Arrays.copyOf(lengths, n);
        slot.inflight++;
        inflightTotal++;
        workers.execute(() -> {
            int st = execute(fd, opcode, offset, length, a, l);
            enqueue(() -> {
                slot.inflight--;
                inflightTotal--;
                post(slot, cid, st, st == VirtNvmeStatus.SUCCESS ? transferredBytes : 0);
            });
        });
    }

    private int execute(int fd, int opcode, long offset, long length, long[] addresses, long[] lengths) {
        try {
            switch (opcode) {
                case VirtNvmeOpcodes.NVME_OPC_READ, VirtNvmeOpcodes.NVME_OPC_WRITE -> {
                    long pos = offset;
                    for (int i = 0; i < addresses.length; i++) {
                        MemorySegment buf =
                                MemorySegment.ofAddress(addresses[i]).reinterpret(lengths[i]);
                        long done = 0;
                        while (done < lengths[i]) {
                            long r = opcode == VirtNvmeOpcodes.NVME_OPC_READ
                                    ? Unistd.pread(fd, buf.asSlice(done), lengths[i] - done, pos + done)
                                    : Unistd.pwrite(fd, buf.asSlice(done), lengths[i] - done, pos + done);
                            if (r <= 0) {
                                return VirtNvmeStatus.DATA_TRANSFER_ERROR;
                            }
                            done += r;
                        }
                        pos += lengths[i];
                    }
                }
                // fdatasync works on the file, so it also makes the O_DIRECT fd's writes durable (device cache flush)
                case VirtNvmeOpcodes.NVME_OPC_FLUSH -> Unistd.fdatasync(bdev.fd());
                case VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES -> {
                    if (bdev.blockDevice()) {
                        Ioctl.blkZeroout(bdev.fd(), offset, length);
                    } else {
                        Fcntl.fallocate(
                                bdev.fd(), Fcntl.FALLOC_FL_ZERO_RANGE | Fcntl.FALLOC_FL_KEEP_SIZE, offset, length);
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
            return VirtNvmeStatus.SUCCESS;
        } catch (ErrnoException e) {
            LOG.log(System.Logger.Level.WARNING, "engine " + bdev.name() + ": " + e.getMessage());
            return VirtNvmeStatus.DATA_TRANSFER_ERROR;
        }
    }

    private void post(Slot slot, int cid, int status, int result) {
        VirtNvmeQueuePair qp = slot.binding.qpair();
        while (!qp.postCompletion(cid, status, result)) {
            if (qp.publishCompletions()) {
                Eventfd.eventfd_write(slot.binding.cqEventFd(), 1);
            }
            Thread.onSpinWait();
        }
        slot.posted = true;
        completed.incrementAndGet();
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
    }
}
