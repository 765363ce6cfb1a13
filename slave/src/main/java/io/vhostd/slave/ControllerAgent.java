package io.vhostd.slave;

import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_IOERR;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_OK;
import static io.vhostd.vhost.virtio.VirtioBlk.VIRTIO_BLK_S_UNSUPP;

import io.vhostd.journal.SessionJournal;
import io.vhostd.journal.inflight.InflightChain;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Priority;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.stats.QueueStatsWriter;
import io.vhostd.shm.stats.StatsDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeOpcodes;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.shm.virtnvme.VirtNvmeStatus;
import io.vhostd.vhost.virtio.DescriptorChain;
import io.vhostd.vhost.virtio.PackedRingDescriptor;
import io.vhostd.vhost.virtio.PackedVirtqueue;
import io.vhostd.vhost.virtio.SplitVirtqueue;
import io.vhostd.vhost.virtio.VirtioBlk;
import io.vhostd.vhost.virtio.VirtioBlkRequest;
import io.vhostd.vhost.virtio.Virtqueue;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import org.agrona.concurrent.ManyToOneConcurrentArrayQueue;

/**
 * The data path of one controller: one thread that fetches virtio-blk requests from every started virtqueue (split or
 * packed, {@link Virtqueue}), turns reads, writes, flushes, discards and write-zeroes into VirtNvme commands (guest
 * buffers named by region id and offset: no copy), answers GET_ID itself, and when a request's last command completed
 * writes the status byte, adds the used element and notifies the guest (event idx permitting). Adaptive: it spins
 * while there is work and for a short while after, then enables guest kicks, arms the completion wakeup and sleeps in
 * poll(2) on the kick and completion eventfds.
 *
 * <p>Requests and commands: a request is one command (IN, OUT, FLUSH), one per segment (DISCARD as
 * NVME_OPC_DATASET_MANAGEMENT, WRITE_ZEROES as NVME_OPC_WRITE_ZEROES, at most {@link #MAX_DISCARD_SEG} / {@link
 * #MAX_WRITE_ZEROES_SEG}), and in write-through mode a FLUSH after its OUT / WRITE_ZEROES commands completed (virtio
 * 1.2 §5.2.6.2: with {@code writeback} 0 a write is stable when it completes). CIDs come from each queue's free stack;
 * a request is taken from the ring only when {@link #MAX_COMMANDS_PER_REQUEST} CIDs are free, so it can always be
 * submitted whole (the rest waits in the ring for completions to free CIDs).
 *
 * <p>Everything read from guest memory is untrusted (see {@link Virtqueue}, {@link VirtioBlkRequest}); a bad request
 * gets {@code VIRTIO_BLK_S_IOERR} (or {@code VIRTIO_BLK_S_UNSUPP} where the spec says so) and the queue keeps going.
 * The control thread never touches a ring: it hands start/stop to this thread through a queue. No allocation per
 * request.
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
     * The data-path thread's nice value (System property {@code vhostd.datapath.nice}, default 0). It spins while
     * requests are in flight; a raised priority would take its CPU from the guest's vCPUs and the master's engine.
     */
    static final int DATA_PATH_NICE = Integer.getInteger("vhostd.datapath.nice", 0);

    /**
     * The polling budget while requests are at the device: their completions come within the device's latency (µs),
     * so waiting for them by polling saves the completion eventfd wake-up; waiting for the guest (nothing in flight)
     * uses the short {@link #SPIN_NS}. System property {@code vhostd.poll.inflight.spin.us} (microseconds).
     */
    static final long INFLIGHT_SPIN_NS = Long.getLong("vhostd.poll.inflight.spin.us", 200) * 1000;

    /** {@code max_discard_seg}: segments per DISCARD request (one VirtNvme command each). */
    static final int MAX_DISCARD_SEG = 16;

    /** {@code max_write_zeroes_seg}: segments per WRITE_ZEROES request (one VirtNvme command each). */
    static final int MAX_WRITE_ZEROES_SEG = 16;

    /** The most VirtNvme commands one request needs at once (a write-through FLUSH reuses a freed CID). */
    static final int MAX_COMMANDS_PER_REQUEST = Math.max(MAX_DISCARD_SEG, MAX_WRITE_ZEROES_SEG);

    private static final int FETCH_BATCH = 32;
    private static final int SLEEP_TIMEOUT_MS = 1000;

    private final String name;
    private final int nsid;
    private final long capacityBytes;
    private final boolean readOnly;
    private final byte[] serial;
    private final int maxSegments;
    private final long capacitySectors;
    private final int blockSectors;
    private final long maxDiscardSectors;
    private final QueueRunner[] queues;
    private final int wakeEventFd;
    private final ManyToOneConcurrentArrayQueue<Runnable> commands = new ManyToOneConcurrentArrayQueue<>(256);
    private final DescriptorChain chain;
    private final VirtioBlkRequest request;
    private final int[] regionIds;
    private final long[] regionOffsets;
    private final int[] segmentLengths;
    /** The DISCARD / WRITE_ZEROES segments of the request being submitted, as read once from guest memory. */
    private final long[] rangeSector = new long[MAX_COMMANDS_PER_REQUEST];

    private final long[] rangeSectors = new long[MAX_COMMANDS_PER_REQUEST];

    /** The VirtNvme SQE flags of each segment: {@code SQE_FLAG_DEALLOCATE} for a WRITE_ZEROES with UNMAP. */
    private final int[] rangeSqeFlags = new int[MAX_COMMANDS_PER_REQUEST];

    private final CompletionHandler completionHandler = new CompletionHandler();
    private final Poll.PollSet pollSet;
    private final int[] pollQueue;
    private final AtomicLong requests = new AtomicLong();
    private final AtomicLong errors = new AtomicLong();
    private volatile boolean running = true;
    /**
     * The cache mode ({@code writeback} of the config space, VIRTIO_BLK_F_CONFIG_WCE): per controller, so it survives a
     * front-end reconnect (QEMU keeps the guest's choice and does not send it again); the session journal carries it
     * to a replacement slave (journal.md §5.2, cache mode).
     */
    private volatile boolean writeback = true;
    /** VirtNvme commands submitted during the current {@link #process} call (the SQ tail is published if any). */
    private int submittedCommands;

    private final Thread thread;

    /** The controller's session journal (issue #4), or null; the queues it tracks have {@code journaled} set. */
    private volatile SessionJournal journal;

    /** Each queue's writer of the controller's stats region (issue #5, spec/stats.md), or null: nothing counted. */
    private volatile QueueStatsWriter[] statsWriters;

    /** With 512-byte logical blocks. */
    ControllerAgent(
            String name,
            int nsid,
            long capacityBytes,
            boolean readOnly,
            byte[] serial,
            int numQueues,
            int maxSegments) {
        this(name, nsid, capacityBytes, 512, readOnly, serial, numQueues, maxSegments);
    }

    /**
     * @param blockSizeBytes the bdev's logical block (a power of two, &gt;= 512): DISCARD / WRITE_ZEROES ranges must be
     *     multiples of it
     */
    ControllerAgent(
            String name,
            int nsid,
            long capacityBytes,
            int blockSizeBytes,
            boolean readOnly,
            byte[] serial,
            int numQueues,
            int maxSegments) {
        if (blockSizeBytes < VirtioBlk.SECTOR_SIZE || Integer.bitCount(blockSizeBytes) != 1) {
            throw new IllegalArgumentException("block size " + blockSizeBytes + " is not a power of two >= 512");
        }
        this.name = name;
        this.nsid = nsid;
        this.capacityBytes = capacityBytes;
        this.readOnly = readOnly;
        this.serial = serial;
        this.maxSegments = maxSegments;
        this.capacitySectors = capacityBytes / VirtioBlk.SECTOR_SIZE;
        this.blockSectors = blockSizeBytes / VirtioBlk.SECTOR_SIZE;
        this.maxDiscardSectors = maxDiscardSectors(blockSizeBytes);
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

    /** The session journal the data path records fetches and completions in (before any queue starts). */
    void journal(SessionJournal sessionJournal) {
        this.journal = sessionJournal;
    }

    /**
     * The controller's stats region ({@link io.vhostd.shm.control.ControlMessage.ControllerStats}, spec/stats.md),
     * before any queue starts; queues beyond the region's queue count are not counted.
     *
     * @throws IllegalStateException if the region is not a formatted stats region
     */
    void stats(MemorySegment region) {
        StatsDescriptor.check(region);
        int n = Math.min(queues.length, StatsDescriptor.numQueues(region));
        QueueStatsWriter[] writers = new QueueStatsWriter[queues.length];
        for (int i = 0; i < n; i++) {
            writers[i] = QueueStatsWriter.attach(region, i);
        }
        this.statsWriters = writers;
    }

    long requests() {
        return requests.get();
    }

    long errors() {
        return errors.get();
    }

    /**
     * {@code max_discard_sectors} and {@code max_write_zeroes_sectors}: the longest range one VirtNvme command carries
     * (its length is a byte count, kept below 2^31 as QEMU's BDRV_REQUEST_MAX_BYTES), in 512-byte sectors, a multiple
     * of the logical block.
     */
    static long maxDiscardSectors(int blockSizeBytes) {
        return (long) (Integer.MAX_VALUE / blockSizeBytes) * (blockSizeBytes / VirtioBlk.SECTOR_SIZE);
    }

    /** The cache mode: true writeback (the default), false write-through. */
    boolean writeback() {
        return writeback;
    }

    /**
     * Sets the cache mode (the driver wrote {@code writeback}, or the features say write-through). Requests taken
     * after this see it; one in flight completes either way (§5.2.6.2: undefined which).
     */
    void writeback(boolean enabled) {
        this.writeback = enabled;
    }

    /**
     * Data-path thread: when it took a handover's queues, and when it then published its first command, polled its
     * first completion and published its first used elements (System.nanoTime; 0: none yet), logged when the handover
     * window ends.
     */
    private long handoverTookNs, firstUsedAfterTakeNs, firstSubmitAfterTakeNs, firstCompletionAfterTakeNs;

    private String sinceTake(long ns) {
        return ns == 0 ? "none in the window" : "+" + (ns - handoverTookNs) / 1_000 + " us";
    }

    /** Data-path thread, at the end of a handover window: how soon the guest saw completions after the take. */
    private void logHandoverWindow() {
        if (handoverTookNs == 0) {
            return;
        }
        LOG.log(
                System.Logger.Level.INFO,
                "controller " + name + ": after the handover's take at " + handoverTookNs + " ns: first command "
                        + sinceTake(firstSubmitAfterTakeNs) + ", first completion "
                        + sinceTake(firstCompletionAfterTakeNs)
                        + ", first used elements " + sinceTake(firstUsedAfterTakeNs));
        handoverTookNs = 0;
    }

    /** The data-path thread's kernel id, -1 until it runs (tests). */
    int dataPathTid() {
        return tid;
    }

    private volatile long startPickedNs;

    /** When the data-path thread began the last {@link #startQueuesAsync} command (System.nanoTime), or 0. */
    long startPickedNs() {
        return startPickedNs;
    }

    /** Starts processing queue {@code runner.index}; returns when the data-path thread took it. */
    void startQueue(QueueRunner runner) {
        startQueuesAsync(List.of(runner)).join();
    }

    /**
     * Hands queues to the data-path thread in one command (a restored session's, issue #4: a handover wakes it once,
     * after every queue is built, rather than once per queue while the next is being built). A queue that cannot start
     * (it runs already, its carried requests are malformed) does not keep the others from starting.
     *
     * @return when the data-path thread had taken them all (System.nanoTime, CLOCK_MONOTONIC ns): the moment the guest
     *     is served again; the future fails with the first queue's error if one could not start
     */
    CompletableFuture<Long> startQueuesAsync(List<QueueRunner> runners) {
        CompletableFuture<Long> done = new CompletableFuture<>();
        Runnable start = () -> {
            startPickedNs = System.nanoTime();
            RuntimeException failed = null;
            for (QueueRunner runner : runners) {
                try {
                    take(runner);
                } catch (RuntimeException e) {
                    failed = failed == null ? e : failed;
                }
            }
            long tookNs = System.nanoTime();
            if (awakeUntilNs != 0) {
                handoverTookNs = tookNs;
                firstUsedAfterTakeNs = 0;
                firstSubmitAfterTakeNs = 0;
                firstCompletionAfterTakeNs = 0;
            }
            if (failed != null) {
                done.completeExceptionally(failed);
            } else {
                done.complete(tookNs);
            }
        };
        if (awakeUntilNs != 0) {
            enqueueUrgent(start);
        } else {
            enqueue(start);
        }
        return done;
    }

    /** On the data-path thread: queue {@code runner.index} runs from now on (its carried requests taken over first). */
    private void take(QueueRunner runner) {
        if (queues[runner.index] != null) {
            throw new IllegalStateException("queue " + runner.index + " already started");
        }
        if (runner.carried != null) {
            takeOver(runner);
        }
        queues[runner.index] = runner;
        QueueStatsWriter[] writers = statsWriters;
        runner.stats = writers == null ? null : writers[runner.index];
        if (runner.stats != null) {
            // what a previous slave left in flight is replayed (and counted) again by this one
            runner.stats.resetDepth(System.nanoTime());
        }
    }

    /**
     * How long the data-path thread stays favoured after {@link #expectHandover()}: the adoption's queue starts and the
     * guest's backlog behind the pause fall inside it.
     */
    static final long HANDOVER_AWAKE_NS = 50_000_000L;

    /**
     * The data-path thread's nice value inside a handover (System property {@code vhostd.handover.datapath.nice},
     * default -10; needs CAP_SYS_NICE, else the thread keeps {@link #DATA_PATH_NICE}).
     */
    static final int HANDOVER_NICE = Integer.getInteger("vhostd.handover.datapath.nice", -10);

    /** The data-path thread's kernel id, -1 until it runs. */
    private volatile int tid = -1;

    /** Until when (System.nanoTime) the data-path thread keeps its handover priority, 0: not in a handover. */
    private volatile long awakeUntilNs;

    /**
     * A session is about to be adopted into this controller (issue #4): from now until {@link #HANDOVER_AWAKE_NS} later
     * the data-path thread runs at {@link #HANDOVER_NICE}, so that the queue starts and the first requests after the
     * pause do not wait for a time slice on busy CPUs; it drops back to {@link #DATA_PATH_NICE} itself when the window
     * ends. It is not made to poll meanwhile: on two CPUs a polling thread at that priority took the CPU from the
     * adoption itself (upgrade pause p50 12.2 ms polling, 9.9 ms not, docs/benchmarks.md). Any thread.
     */
    void expectHandover() {
        awakeUntilNs = System.nanoTime() + HANDOVER_AWAKE_NS;
        int t = tid;
        if (t > 0) {
            try {
                Priority.setpriority(Priority.PRIO_PROCESS, t, HANDOVER_NICE);
            } catch (RuntimeException e) {
                // no CAP_SYS_NICE: the usual priority
            }
        }
    }

    /**
     * Stops fetching from queue {@code index}, waits until its in-flight requests completed and their used elements
     * are published, and returns the ring's vring base (vhost-user GET_VRING_BASE: split, the next avail index;
     * packed, both positions with their wrap counters); -1 if the queue was not started.
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

    /**
     * Issue #4 rolling upgrade: stops fetching from every started queue at once, waits until the requests already
     * submitted completed and their used elements are published (journaled like any completion), and removes the
     * queues. Nothing else is recorded in the journal: the queues stay started there, and another slave continues
     * them (requests of a replay still pending stay in flight in the journal and are replayed by it).
     *
     * @return the requests that were in flight when fetching stopped
     */
    int releaseQueues() {
        CompletableFuture<Integer> inflight = new CompletableFuture<>();
        @SuppressWarnings("unchecked")
        CompletableFuture<Integer>[] stopped = new CompletableFuture[queues.length];
        enqueue(() -> {
            int n = 0;
            for (int i = 0; i < queues.length; i++) {
                QueueRunner q = queues[i];
                if (q != null) {
                    n += q.inflightCount;
                    stopped[i] = new CompletableFuture<>();
                    q.stopping = true;
                    q.stopped = stopped[i];
                }
            }
            inflight.complete(n);
        });
        int n = inflight.join();
        for (CompletableFuture<Integer> f : stopped) {
            if (f != null) {
                f.join();
            }
        }
        return n;
    }

    /**
     * Issue #4 rolling upgrade without a drain: at a boundary of the data path's loop (the SQ tail and every used
     * element published, no write-through FLUSH waiting), stops fetching from every started queue and consuming its
     * completions, removes the queues and returns, per queue, the requests whose commands are still at the device
     * ({@link ControlMessage.CarriedQueue}); the next slave completes them. If more than {@code maxCommands} commands
     * are in flight (the report would not fit one control message) nothing changes and null is returned: the caller
     * drains instead ({@link #releaseQueues()}). The journal records nothing: its queues stay started, with these
     * requests in flight.
     */
    List<ControlMessage.CarriedQueue> handOverQueues(int maxCommands) {
        CompletableFuture<List<ControlMessage.CarriedQueue>> done = new CompletableFuture<>();
        enqueueUrgent(() -> {
            int commandsInFlight = 0;
            for (QueueRunner q : queues) {
                if (q != null) {
                    commandsInFlight += q.cidRequest.length - q.freeCidCount;
                }
            }
            if (commandsInFlight > maxCommands) {
                done.complete(null);
                return;
            }
            List<ControlMessage.CarriedQueue> out = new ArrayList<>();
            for (int i = 0; i < queues.length; i++) {
                QueueRunner q = queues[i];
                if (q == null) {
                    continue;
                }
                List<Integer> heads = new ArrayList<>();
                List<Integer> states = new ArrayList<>();
                for (int head = 0; head < q.inflight.length; head++) {
                    if (q.inflight[head]) {
                        heads.add(head);
                        states.add((q.requestStatus[head] & 0xFF)
                                | (q.flushAfter[head] ? ControlMessage.CarriedQueue.FLUSH_AFTER_MASK : 0));
                    }
                }
                List<Integer> cids = new ArrayList<>();
                List<Integer> cidHeads = new ArrayList<>();
                for (int cid = 0; cid < q.cidRequest.length; cid++) {
                    if (q.cidRequest[cid] >= 0) {
                        cids.add(cid);
                        cidHeads.add(q.cidRequest[cid]);
                    }
                }
                out.add(new ControlMessage.CarriedQueue(i, heads, states, cids, cidHeads));
                queues[i] = null;
            }
            done.complete(out);
        });
        return done.join();
    }

    /**
     * Takes over the requests another slave left at the device (issue #4 rolling upgrade; data-path thread, before
     * the queue runs): each chain is read again from the descriptor table by its head (the guest cannot reuse a head
     * before it is used), the request's status byte and used length located as at its fetch, and the commands still
     * at the device mapped back to it by CID. Everything comes from a peer process and is checked.
     *
     * @throws IllegalArgumentException if the carried state is not one the previous slave can have left
     */
    private void takeOver(QueueRunner q) {
        ControlMessage.CarriedQueue c = q.carried;
        q.carried = null;
        if (c.index() != q.index
                || c.heads().size() != c.states().size()
                || c.cids().size() != c.cidHeads().size()) {
            throw new IllegalArgumentException("queue " + q.index + ": malformed carry-over");
        }
        for (int i = 0; i < c.heads().size(); i++) {
            int head = c.heads().get(i);
            int state = c.states().get(i);
            if (head < 0 || head >= q.inflight.length || q.inflight[head] || (state & ~0x1FF) != 0) {
                throw new IllegalArgumentException("queue " + q.index + ": carried request " + head + " invalid");
            }
            if (popCarried(q, head) == Virtqueue.POP_MALFORMED || !request.parse(chain, q.memory)) {
                throw new IllegalArgumentException("queue " + q.index + ": carried request " + head + " malformed");
            }
            // as begin() did when the previous slave fetched it
            q.statusRegion[head] = request.statusRegionIndex();
            q.statusOffset[head] = request.statusRegionOffset();
            q.usedLengthBytes[head] =
                    request.type() == VirtioBlk.VIRTIO_BLK_T_IN ? (int) request.dataLengthBytes() + 1 : 1;
            q.ringDescriptors[head] = chain.ringDescriptorCount();
            q.requestStatus[head] = (byte) (state & 0xFF);
            q.flushAfter[head] = (state & ControlMessage.CarriedQueue.FLUSH_AFTER_MASK) != 0;
            q.pendingCommands[head] = 0;
            q.inflight[head] = true;
            q.inflightCount++;
        }
        for (int j = 0; j < c.cids().size(); j++) {
            int cid = c.cids().get(j);
            int head = c.cidHeads().get(j);
            if (cid < 0 || cid >= q.cidRequest.length || q.cidRequest[cid] >= 0) {
                throw new IllegalArgumentException("queue " + q.index + ": carried CID " + cid + " invalid");
            }
            if (head < 0 || head >= q.inflight.length || !q.inflight[head]) {
                throw new IllegalArgumentException("queue " + q.index + ": CID " + cid + " names no carried request");
            }
            q.cidRequest[cid] = head;
            q.pendingCommands[head]++;
        }
        // their SQEs, from the SQ, as this slave's copies: a master restart before they complete can resubmit them
        int copied = q.qp.adoptSubmissions(
                c.cids().stream().mapToInt(Integer::intValue).toArray(), nsid);
        if (copied < c.cids().size()) {
            LOG.log(
                    System.Logger.Level.DEBUG,
                    "controller " + name + " queue " + q.index + ": "
                            + (c.cids().size() - copied)
                            + " carried command(s) no longer in the SQ; a master restart before they complete fails"
                            + " them");
        }
        for (int head : c.heads()) {
            if (q.pendingCommands[head] == 0) {
                throw new IllegalArgumentException(
                        "queue " + q.index + ": carried request " + head + " has no command");
            }
        }
        // the free stack holds every CID not at the device, popped in ascending order
        q.freeCidCount = 0;
        for (int cid = q.cidRequest.length - 1; cid >= 0; cid--) {
            if (q.cidRequest[cid] < 0) {
                q.freeCids[q.freeCidCount++] = cid;
            }
        }
    }

    /**
     * Issue #4 master restart (virtnvme.md §10.2 "Slave, on a master restart"): on the data-path thread, per started
     * queue with a known resume point, consumes the completions the dead master posted (one poll: they are all
     * posted, at most depth of them), then resubmits, in SQ order, every CID still outstanding whose SQ index is below
     * the restarted master's SQ head {@code sqHeads[i]}: the dead master fetched those and they will never complete.
     * Commands at or above it are still in the SQ, and the restarted master executes them. Each CID thus completes
     * once. A CID taken over in a rolling upgrade was resubmittable if its SQE was still in the SQ at the take-over
     * ({@link VirtNvmeQueuePair#adoptSubmissions}); one whose slot had been overwritten (submitted depth or more
     * commands before) cannot be resubmitted: its request completes with IOERR.
     *
     * @param sqHeads per queue, the restarted master's SQ head h0 (u32)
     * @param known per queue, whether the master reported a resume point
     * @return the commands resubmitted
     */
    int masterRestarted(int[] sqHeads, boolean[] known) {
        CompletableFuture<Integer> done = new CompletableFuture<>();
        enqueue(() -> {
            int n = 0;
            for (QueueRunner q : queues) {
                if (q == null || q.index >= known.length || !known[q.index]) {
                    continue;
                }
                // the dead master's posted completions first: a CID below c0 is done, not lost
                process(q);
                n += resubmitLost(q, sqHeads[q.index]);
            }
            done.complete(n);
        });
        return done.join();
    }

    /** {@link #masterRestarted}'s resubmission for one queue; returns how many commands went out again. */
    private int resubmitLost(QueueRunner q, int sqHead) {
        int depth = q.cidRequest.length;
        int[] lost = new int[depth];
        int count = 0;
        for (int cid = 0; cid < depth; cid++) {
            // u32 indexes that wrap: "below h0" is a negative signed distance
            if (q.cidRequest[cid] >= 0 && q.qp.submittedSqIndex(cid) - sqHead < 0) {
                lost[count++] = cid;
            }
        }
        int[] order = java.util.Arrays.stream(lost, 0, count)
                .boxed()
                .sorted(java.util.Comparator.comparingInt(cid -> q.qp.submittedSqIndex(cid) - sqHead))
                .mapToInt(Integer::intValue)
                .toArray();
        int resubmitted = 0;
        for (int cid : order) {
            boolean ok;
            try {
                ok = q.qp.resubmit(cid);
            } catch (IllegalStateException e) {
                LOG.log(
                        System.Logger.Level.ERROR,
                        "controller " + name + " queue " + q.index + ": cid " + cid + " cannot be resubmitted: "
                                + e.getMessage());
                ok = false;
            }
            if (!ok) {
                int head = q.cidRequest[cid];
                q.cidRequest[cid] = -1;
                q.freeCids[q.freeCidCount++] = cid;
                errors.incrementAndGet();
                commandDone(q, head, false);
                continue;
            }
            resubmitted++;
        }
        q.qp.publishSubmissions();
        // the restarted master may be asleep on an event index the dead one armed: wake it once
        Eventfd.eventfd_write(q.sqEventFd, 1);
        if (resubmitted > 0) {
            LOG.log(
                    System.Logger.Level.INFO,
                    "controller " + name + " queue " + q.index + ": " + resubmitted
                            + " command(s) the dead master had fetched submitted again");
        }
        return resubmitted;
    }

    /**
     * A carried request's chain: split, re-read from the descriptor table by its head; packed, from the journal's
     * descriptor copies (journal.md §6.5: the ring positions may hold used descriptors by now), its region entry kept.
     */
    private int popCarried(QueueRunner q, int head) {
        if (q.vq instanceof SplitVirtqueue split) {
            return split.popHead(head, chain);
        }
        InflightChain copy = q.carriedChains == null ? null : q.carriedChains[head];
        if (copy == null) {
            throw new IllegalArgumentException(
                    "queue " + q.index + ": carried packed request " + head + " has no copy");
        }
        int r = ((PackedVirtqueue) q.vq).popCopies(copy.descriptors(), chain);
        if (chain.head() != head) {
            throw new IllegalArgumentException(
                    "queue " + q.index + ": carried packed request " + head + " copies name buffer id " + chain.head());
        }
        q.packedEntry[head] = copy.headEntry();
        return r;
    }

    /**
     * Returns once the data-path thread has finished the loop iteration it was in (a no-op command's round trip):
     * everything it did for what was visible before the call (used elements published, notifications decided and
     * sent) is done.
     */
    void barrier() {
        CompletableFuture<Void> done = new CompletableFuture<>();
        enqueue(() -> done.complete(null));
        done.join();
    }

    /** State of the started queues, for {@code vhost_get_controllers}; -1 entries for queues not started. */
    QueueRunner queue(int index) {
        return queues[index];
    }

    /**
     * {@link #enqueue} of a command a handover's pause waits for (issue #4: a release's hand-over, a restored session's
     * queues): the data-path thread runs at {@link Priority#HANDOVER_RTPRIO} (SCHED_FIFO) from now to the end of the
     * loop pass in which it ran {@code command} (the guest's backlog behind the pause fetched and submitted), so that
     * its wake-up does not wait for a time slice on busy CPUs; then back to its nice value, before it spins or sleeps.
     * A thread not started yet raises itself when it starts. Without the priority (0, no CAP_SYS_NICE) the thread keeps
     * its own. Any thread.
     */
    void enqueueUrgent(Runnable command) {
        // before tid is read: a thread that starts meanwhile sees the flag and raises itself (run())
        urgentPending = true;
        int t = tid;
        if (Priority.HANDOVER_RTPRIO > 0 && t > 0) {
            try {
                Priority.setScheduler(t, Priority.SCHED_FIFO | Priority.SCHED_RESET_ON_FORK, Priority.HANDOVER_RTPRIO);
            } catch (RuntimeException e) {
                // no CAP_SYS_NICE or no real-time budget: the usual priority
            }
        }
        enqueue(() -> {
            // the thread leaves SCHED_FIFO after this iteration's pass over the queues: the backlog the guest queued
            // behind the pause is fetched and submitted before any other thread gets this CPU
            realtimeUntilPassEnds = true;
            command.run();
        });
    }

    /** An {@link #enqueueUrgent} command is on its way: a data-path thread starting now runs at SCHED_FIFO at once. */
    private volatile boolean urgentPending;

    /** Data-path thread: it runs at SCHED_FIFO until the end of this loop iteration ({@link #enqueueUrgent}). */
    private boolean realtimeUntilPassEnds;

    /** Data-path thread: back from SCHED_FIFO to its nice value after an urgent command's iteration. */
    private void leaveRealtime() {
        realtimeUntilPassEnds = false;
        urgentPending = false;
        Priority.ordinaryCurrentThread(awakeUntilNs != 0 ? HANDOVER_NICE : DATA_PATH_NICE);
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
        tid = Priority.gettid();
        // not the nice of the control loop that started it (threads inherit it): the data path competes with the guest
        Priority.niceCurrentThread(awakeUntilNs != 0 ? HANDOVER_NICE : DATA_PATH_NICE);
        if (urgentPending && Priority.HANDOVER_RTPRIO > 0) {
            // an urgent command came before this thread had a tid (a crash adoption starts it just before)
            Priority.favourCurrentThread(HANDOVER_NICE, Priority.HANDOVER_RTPRIO);
        }
        long idleSinceNs = 0;
        try {
            while (running) {
                int work;
                try {
                    work = commands.drain(Runnable::run);
                    for (QueueRunner q : queues) {
                        if (q != null) {
                            work += process(q);
                        }
                    }
                } finally {
                    if (realtimeUntilPassEnds) {
                        leaveRealtime();
                    }
                }
                long now = System.nanoTime();
                long awakeUntil = awakeUntilNs;
                if (awakeUntil != 0 && now - awakeUntil >= 0) {
                    // the handover window ended: back to the usual priority
                    awakeUntilNs = 0;
                    Priority.niceCurrentThread(DATA_PATH_NICE);
                    awakeUntil = 0;
                    logHandoverWindow();
                }
                if (work > 0) {
                    idleSinceNs = 0;
                    continue;
                }
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
        } finally {
            // kernel thread ids are reused: nobody may change this one's policy any more
            tid = -1;
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
        submittedCommands = 0;
        if (q.stats != null) {
            // spec/stats.md: the flags are read once per poll batch
            q.statsFlags = q.stats.flags();
            q.batchFetchNs = 0;
        }
        int completionsPolled = q.qp.pollCompletions(completionHandler.on(q));
        int work = completionsPolled;
        // after the poll: its CQ head store freed the CIDs of the completions (virtnvme.md §6.6 step 4)
        work += submitFlushes(q);
        if (!q.stopping) {
            work += replay(q);
            work += replayPacked(q);
            work += fetch(q);
        }
        if (q.fetchedCount > 0) {
            // before the SQ tail store: the master cannot take the SQEs earlier than this
            statsSubmitted(q);
        }
        if (submittedCommands > 0 && q.qp.publishSubmissions()) {
            Eventfd.eventfd_write(q.sqEventFd, 1);
        }
        if (handoverTookNs != 0) {
            if (submittedCommands > 0 && firstSubmitAfterTakeNs == 0) {
                firstSubmitAfterTakeNs = System.nanoTime();
            }
            if (completionsPolled > 0 && firstCompletionAfterTakeNs == 0) {
                firstCompletionAfterTakeNs = System.nanoTime();
            }
        }
        if (q.usedPending) {
            q.usedPending = false;
            if ((q.journaled || q.inflightRegion != null || q.packedRegion != null) && q.usedBatchCount > 0) {
                // journal.md §6.2: the batch is committed before the guest can see it, applied after; the inflight
                // region's two phases nest inside (vhost-user.rst: last_batch_head list, used->idx, clear, used_idx)
                if (q.journaled) {
                    journal.completionsBegin(q.index, q.usedBatch, q.usedBatchCount, q.vq.usedIdx());
                }
                if (q.inflightRegion != null) {
                    q.inflightRegion.batchBegin(q.usedBatch, q.usedBatchCount);
                } else if (q.packedRegion != null) {
                    for (int i = 0; i < q.usedBatchCount; i++) {
                        q.usedEntries[i] = q.packedEntry[q.usedBatch[i]];
                    }
                    q.packedRegion.batchBegin(q.usedEntries, q.usedBatchCount);
                }
                q.vq.publishUsed();
                if (q.inflightRegion != null) {
                    q.inflightRegion.batchEnd(q.usedBatch, q.usedBatchCount);
                } else if (q.packedRegion != null) {
                    q.packedRegion.batchEnd(q.usedEntries, q.usedBatchCount);
                    for (int i = 0; i < q.usedBatchCount; i++) {
                        q.packedEntry[q.usedBatch[i]] = -1;
                    }
                }
                if (q.journaled) {
                    journal.completionsEnd(q.index);
                }
                q.usedBatchCount = 0;
            } else {
                q.vq.publishUsed();
            }
            long usedNs = q.stats != null ? System.nanoTime() : 0;
            if (q.vq.needsNotification() && q.callFd >= 0) {
                Eventfd.eventfd_write(q.callFd, 1);
            }
            if (handoverTookNs != 0 && firstUsedAfterTakeNs == 0) {
                firstUsedAfterTakeNs = System.nanoTime();
            }
            if (q.stats != null) {
                statsPublished(q, usedNs);
            }
        }
        // a queue stopped because its ring broke stays here, not fetching, until stopQueue (GET_VRING_BASE) claims it
        if (q.stopping && q.stopped != null && q.inflightCount == 0) {
            queues[q.index] = null;
            q.stopped.complete(q.vq.vringBase());
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

    /**
     * Fetches up to {@link #FETCH_BATCH} requests, each only while {@link #MAX_COMMANDS_PER_REQUEST} CIDs are free;
     * returns how many were taken from the ring.
     */
    private int fetch(QueueRunner q) {
        int taken = 0;
        // a replacement slave resubmits the requests it took over before it fetches new ones (fetch order)
        while (taken < FETCH_BATCH
                && q.freeCidCount >= MAX_COMMANDS_PER_REQUEST
                && q.replayNext == q.replayHeads.length
                && q.replayChainNext == q.replayChains.length) {
            int r;
            // packed inflight region: where the chain starts, to copy its ring descriptors after the pop
            int start = q.vq.lastAvailIdx();
            try {
                r = q.vq.pop(chain);
            } catch (IllegalStateException e) {
                markBroken(q, e);
                return taken;
            }
            if (r == Virtqueue.POP_EMPTY) {
                break;
            }
            taken++;
            requests.incrementAndGet();
            int head = chain.head();
            // an id that is still in flight (or completed but not yet published) cannot be available twice: a guest
            // bug; it is not answered twice
            boolean duplicate = head >= 0
                    && (q.inflight[head]
                            || (q.journaled && journal.isInflight(q.index, head))
                            || (q.inflightRegion != null && q.inflightRegion.isInflight(head))
                            || q.packedEntry[head] >= 0);
            if (q.journaled) {
                if (head < 0 || duplicate) {
                    // consumed without a request of its own (journal.md §6.1 availSkipped)
                    journal.availSkipped(q.index, q.vq.lastAvailIdx());
                } else if (q.vq.packed()) {
                    // journal.md §6.5: copies of the chain's ring descriptors, committed with the new avail position
                    try {
                        journalPacked(q, head, start);
                    } catch (IllegalStateException e) {
                        // more ring descriptors in flight than the ring has: only a broken ring gets here
                        markBroken(q, e);
                        return taken;
                    }
                } else {
                    // journal.md "Wiring notes": recorded after the pop, before anything is submitted
                    journal.requestFetched(q.index, head, q.vq.lastAvailIdx());
                }
            }
            if (duplicate) {
                errors.incrementAndGet();
                continue;
            }
            if (q.stats != null && head >= 0) {
                statsFetched(q, head);
            }
            if (q.inflightRegion != null && head >= 0) {
                // vhost-user.rst "Inflight I/O tracking": in flight before it is processed; after the journal record,
                // so that a slave replacing this one finds the region's heads in its journal (BlkDevice reconciles)
                q.inflightRegion.fetched(head);
            } else if (q.packedRegion != null && head >= 0) {
                recordPacked(q, head, start);
            }
            if (r == Virtqueue.POP_MALFORMED) {
                // parse what there is, only to find the status byte to write IOERR into
                request.parse(chain, q.memory);
                fail(q, head, chain.ringDescriptorCount(), "malformed descriptor chain: " + chain.errorName());
                continue;
            }
            if (!request.parse(chain, q.memory)) {
                fail(q, head, chain.ringDescriptorCount(), "malformed virtio-blk request: " + request.errorName());
                continue;
            }
            q.ringDescriptors[head] = chain.ringDescriptorCount();
            submit(q, head);
        }
        return taken;
    }

    /** Records the ring descriptors of the packed chain just popped in the session journal (journal.md §6.5). */
    private void journalPacked(QueueRunner q, int id, int start) {
        PackedVirtqueue ring = (PackedVirtqueue) q.vq;
        int size = ring.size();
        int offset = start & PackedRingDescriptor.VRING_BASE_OFFSET_MASK;
        int n = chain.ringDescriptorCount();
        for (int k = 0; k < n; k++) {
            journal.packedDescriptorFetched(
                    q.index,
                    id,
                    ring.ringDescAddr(offset),
                    ring.ringDescLen(offset),
                    ring.ringDescId(offset),
                    ring.ringDescFlags(offset));
            offset = offset + 1 == size ? 0 : offset + 1;
        }
        journal.packedChainFetched(q.index, id, q.vq.lastAvailIdx());
    }

    /** Copies the ring descriptors of the chain just popped into the packed inflight region (before processing). */
    private void recordPacked(QueueRunner q, int id, int start) {
        PackedVirtqueue ring = (PackedVirtqueue) q.vq;
        int size = ring.size();
        int offset = start & PackedRingDescriptor.VRING_BASE_OFFSET_MASK;
        int n = chain.ringDescriptorCount();
        int entry = -1;
        for (int k = 0; k < n; k++) {
            entry = q.packedRegion.descriptorFetched(
                    ring.ringDescAddr(offset),
                    ring.ringDescLen(offset),
                    ring.ringDescId(offset),
                    ring.ringDescFlags(offset),
                    k == 0,
                    k == n - 1);
            offset = offset + 1 == size ? 0 : offset + 1;
        }
        q.packedEntry[id] = entry;
    }

    /**
     * Resubmits the packed chains a dead daemon left in flight (the inflight region's descriptor copies), oldest fetch
     * first; they stay in the region under their entries. Returns how many were resubmitted.
     */
    private int replayPacked(QueueRunner q) {
        int n = 0;
        while (q.replayChainNext < q.replayChains.length
                && n < FETCH_BATCH
                && q.freeCidCount >= MAX_COMMANDS_PER_REQUEST) {
            InflightChain copy = q.replayChains[q.replayChainNext++];
            n++;
            requests.incrementAndGet();
            int r = ((PackedVirtqueue) q.vq).popCopies(copy.descriptors(), chain);
            int head = chain.head();
            if (head < 0 || q.inflight[head] || q.packedEntry[head] >= 0) {
                // no id to answer with, or an id twice: the chain stays in the region (a hostile region or guest)
                errors.incrementAndGet();
                continue;
            }
            q.packedEntry[head] = copy.headEntry();
            if (r == Virtqueue.POP_MALFORMED) {
                request.parse(chain, q.memory);
                fail(q, head, copy.descriptors().size(), "resubmitted chain malformed: " + chain.errorName());
                continue;
            }
            if (!request.parse(chain, q.memory)) {
                fail(q, head, copy.descriptors().size(), "resubmitted request malformed: " + request.errorName());
                continue;
            }
            q.ringDescriptors[head] = copy.descriptors().size();
            submit(q, head);
        }
        return n;
    }

    /**
     * Resubmits the requests a dead slave left in flight (journal.md §7.4), oldest fetch first, re-reading each chain
     * from the descriptor table by its head: the guest cannot reuse a head before it is used. They stay in flight in
     * the journal under their original sequence. Returns how many were resubmitted.
     */
    private int replay(QueueRunner q) {
        int n = 0;
        while (q.replayNext < q.replayHeads.length && n < FETCH_BATCH && q.freeCidCount >= MAX_COMMANDS_PER_REQUEST) {
            int head = q.replayHeads[q.replayNext++];
            n++;
            requests.incrementAndGet();
            // journaled queues are split rings (BlkDevice journals no other)
            int r = ((SplitVirtqueue) q.vq).popHead(head, chain);
            if (head < 0 || head >= q.inflight.length || q.inflight[head]) {
                errors.incrementAndGet();
                continue;
            }
            if (q.stats != null) {
                statsFetched(q, head);
            }
            if (r == Virtqueue.POP_MALFORMED) {
                request.parse(chain, q.memory);
                fail(q, head, chain.ringDescriptorCount(), "replayed chain malformed: " + chain.errorName());
                continue;
            }
            if (!request.parse(chain, q.memory)) {
                fail(q, head, chain.ringDescriptorCount(), "replayed request malformed: " + request.errorName());
                continue;
            }
            q.ringDescriptors[head] = chain.ringDescriptorCount();
            submit(q, head);
        }
        return n;
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
                    fail(
                            q,
                            head,
                            q.ringDescriptors[head],
                            "request outside the disk: sector " + sector + " length " + length);
                    return;
                }
                if (type == VirtioBlk.VIRTIO_BLK_T_OUT && readOnly) {
                    fail(q, head, q.ringDescriptors[head], null);
                    return;
                }
                int segments = request.dataSegmentCount();
                for (int i = 0; i < segments; i++) {
                    regionIds[i] = request.dataRegionId(i);
                    regionOffsets[i] = request.dataRegionOffset(i);
                    segmentLengths[i] = request.dataLengthBytes(i);
                }
                boolean in = type == VirtioBlk.VIRTIO_BLK_T_IN;
                begin(q, head, in ? (int) length + 1 : 1, !in && writeThrough(q));
                statsOp(
                        q,
                        head,
                        in ? StatsDescriptor.OP_READ : StatsDescriptor.OP_WRITE,
                        sector * VirtioBlk.SECTOR_SIZE,
                        length);
                submitCommand(
                        q,
                        head,
                        in ? VirtNvmeOpcodes.NVME_OPC_READ : VirtNvmeOpcodes.NVME_OPC_WRITE,
                        sector * VirtioBlk.SECTOR_SIZE,
                        (int) length,
                        segments);
                commandDone(q, head, true);
            }
            case VirtioBlk.VIRTIO_BLK_T_FLUSH -> {
                begin(q, head, 1, false);
                statsOp(q, head, StatsDescriptor.OP_FLUSH, 0, 0);
                submitCommand(q, head, VirtNvmeOpcodes.NVME_OPC_FLUSH, 0, 0, 0);
                commandDone(q, head, true);
            }
            case VirtioBlk.VIRTIO_BLK_T_DISCARD, VirtioBlk.VIRTIO_BLK_T_WRITE_ZEROES ->
                discardOrWriteZeroes(q, head, type);
            case VirtioBlk.VIRTIO_BLK_T_GET_ID -> {
                int written = request.writeData(q.memory, serial);
                request.writeStatus(q.memory, VIRTIO_BLK_S_OK);
                q.requestStatus[head] = VIRTIO_BLK_S_OK;
                q.vq.pushUsed(head, written + 1, q.ringDescriptors[head]);
                pushed(q, head);
            }
            default -> answer(q, head, VIRTIO_BLK_S_UNSUPP);
        }
    }

    /**
     * DISCARD / WRITE_ZEROES (virtio 1.2 §5.2.6): every segment is read once into {@link #rangeSector} / {@link
     * #rangeSectors} and checked ({@link VirtioBlk#checkDiscardWriteZeroes}) before any is submitted; then one
     * VirtNvme command per non-empty segment. WRITE_ZEROES zeroes the range (NVME_OPC_WRITE_ZEROES: reads return
     * zeroes); with VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP the command carries SQE_FLAG_DEALLOCATE and the engine may
     * deallocate the blocks ({@code write_zeroes_may_unmap} is 1).
     */
    private void discardOrWriteZeroes(QueueRunner q, int head, int type) {
        boolean discard = type == VirtioBlk.VIRTIO_BLK_T_DISCARD;
        long feature = discard ? VirtioBlk.VIRTIO_BLK_F_DISCARD_MASK : VirtioBlk.VIRTIO_BLK_F_WRITE_ZEROES_MASK;
        if ((q.features & feature) == 0) {
            answer(q, head, VIRTIO_BLK_S_UNSUPP);
            return;
        }
        if (readOnly) {
            answer(q, head, VIRTIO_BLK_S_IOERR);
            return;
        }
        int count = request.rangeCount();
        // §5.2.6.1: at most max_discard_seg / max_write_zeroes_seg segments; more is a driver error
        if (count > (discard ? MAX_DISCARD_SEG : MAX_WRITE_ZEROES_SEG)) {
            answer(q, head, VIRTIO_BLK_S_IOERR);
            return;
        }
        for (int i = 0; i < count; i++) {
            request.readRange(q.memory, i);
            // the guest may rewrite the segment at any time: what was checked is what gets submitted
            rangeSector[i] = request.rangeSector();
            rangeSectors[i] = request.rangeNumSectors();
            int rangeFlags = request.rangeFlags();
            rangeSqeFlags[i] = !discard && (rangeFlags & VirtioBlk.VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP) != 0
                    ? VirtNvmeDescriptor.SQE_FLAG_DEALLOCATE_MASK
                    : 0;
            int status = VirtioBlk.checkDiscardWriteZeroes(
                    type,
                    rangeSector[i],
                    rangeSectors[i],
                    rangeFlags,
                    capacitySectors,
                    maxDiscardSectors,
                    blockSectors);
            if (status != VIRTIO_BLK_S_OK) {
                answer(q, head, status);
                return;
            }
        }
        begin(q, head, 1, !discard && writeThrough(q));
        if (q.stats != null) {
            long bytes = 0;
            for (int i = 0; i < count; i++) {
                bytes += rangeSectors[i] * VirtioBlk.SECTOR_SIZE;
            }
            statsOp(
                    q,
                    head,
                    discard ? StatsDescriptor.OP_UNMAP : StatsDescriptor.OP_WRITE_ZEROES,
                    count > 0 ? rangeSector[0] * VirtioBlk.SECTOR_SIZE : 0,
                    bytes);
        }
        int opcode = discard ? VirtNvmeOpcodes.NVME_OPC_DATASET_MANAGEMENT : VirtNvmeOpcodes.NVME_OPC_WRITE_ZEROES;
        for (int i = 0; i < count; i++) {
            if (rangeSectors[i] != 0
                    && !submitCommand(
                            q,
                            head,
                            opcode,
                            rangeSqeFlags[i],
                            rangeSector[i] * VirtioBlk.SECTOR_SIZE,
                            (int) (rangeSectors[i] * VirtioBlk.SECTOR_SIZE),
                            0)) {
                break;
            }
        }
        commandDone(q, head, true);
    }

    /**
     * Write-through (virtio 1.2 §5.2.6.2): writes must be stable when they complete. With VIRTIO_BLK_F_CONFIG_WCE the
     * driver chose ({@code writeback} 0); without it, when VIRTIO_BLK_F_FLUSH was offered but not negotiated.
     */
    private boolean writeThrough(QueueRunner q) {
        if ((q.features & VirtioBlk.VIRTIO_BLK_F_CONFIG_WCE_MASK) != 0) {
            return !writeback;
        }
        return (q.features & VirtioBlk.VIRTIO_BLK_F_FLUSH_MASK) == 0;
    }

    /**
     * Starts tracking a request that becomes commands. It holds one extra pending count until the caller's {@code
     * commandDone(q, head, true)} after the last submission, so it cannot complete half-submitted.
     */
    private void begin(QueueRunner q, int head, int usedLength, boolean flushAfter) {
        q.statusRegion[head] = request.statusRegionIndex();
        q.statusOffset[head] = request.statusRegionOffset();
        q.usedLengthBytes[head] = usedLength;
        q.requestStatus[head] = VIRTIO_BLK_S_OK;
        q.flushAfter[head] = flushAfter;
        q.pendingCommands[head] = 1;
        q.inflight[head] = true;
        q.inflightCount++;
    }

    /**
     * Submits one VirtNvme command for request {@code head}, segments from {@link #regionIds} etc. On failure the
     * request will complete with IOERR.
     */
    private boolean submitCommand(
            QueueRunner q, int head, int opcode, long offsetBytes, int lengthBytes, int segments) {
        return submitCommand(q, head, opcode, 0, offsetBytes, lengthBytes, segments);
    }

    /** {@link #submitCommand(QueueRunner, int, int, long, int, int)} with VirtNvme SQE flags ({@code sqeFlags}). */
    private boolean submitCommand(
            QueueRunner q, int head, int opcode, int sqeFlags, long offsetBytes, int lengthBytes, int segments) {
        if (q.freeCidCount == 0) {
            // cannot happen: fetch reserves MAX_COMMANDS_PER_REQUEST CIDs and a FLUSH reuses a freed one
            q.requestStatus[head] = VIRTIO_BLK_S_IOERR;
            errors.incrementAndGet();
            LOG.log(System.Logger.Level.ERROR, "controller " + name + " queue " + q.index + ": no free CID");
            return false;
        }
        int cid = q.freeCids[--q.freeCidCount];
        if (!q.qp.submit(
                opcode,
                sqeFlags,
                cid,
                nsid,
                offsetBytes,
                lengthBytes,
                segments,
                regionIds,
                regionOffsets,
                segmentLengths)) {
            q.freeCids[q.freeCidCount++] = cid;
            q.requestStatus[head] = VIRTIO_BLK_S_IOERR;
            errors.incrementAndGet();
            LOG.log(System.Logger.Level.ERROR, "controller " + name + " queue " + q.index + ": VirtNvme SQ full");
            return false;
        }
        q.cidRequest[cid] = head;
        q.pendingCommands[head]++;
        submittedCommands++;
        return true;
    }

    /**
     * One command of request {@code head} is done (or the submitter's hold is dropped). When none is left: queue its
     * write-through FLUSH, or complete it.
     */
    private void commandDone(QueueRunner q, int head, boolean ok) {
        if (!ok) {
            q.requestStatus[head] = VIRTIO_BLK_S_IOERR;
        }
        if (--q.pendingCommands[head] > 0) {
            return;
        }
        if (q.flushAfter[head] && q.requestStatus[head] == VIRTIO_BLK_S_OK) {
            // the FLUSH goes out after this completion poll, when the CQ head store has freed the CIDs it consumed
            q.flushAfter[head] = false;
            int size = q.flushQueue.length;
            q.flushQueue[(q.flushHead + q.flushCount) % size] = head;
            q.flushCount++;
            return;
        }
        complete(q, head);
    }

    /** Submits the write-through FLUSHes queued by the last completion poll; returns how many. */
    private int submitFlushes(QueueRunner q) {
        int n = 0;
        int size = q.flushQueue.length;
        while (q.flushCount > 0) {
            int head = q.flushQueue[q.flushHead];
            q.flushHead = (q.flushHead + 1) % size;
            q.flushCount--;
            q.pendingCommands[head] = 1;
            submitCommand(q, head, VirtNvmeOpcodes.NVME_OPC_FLUSH, 0, 0, 0);
            commandDone(q, head, true);
            n++;
        }
        return n;
    }

    /** Completes a tracked request: status byte, used element (not yet published). */
    private void complete(QueueRunner q, int head) {
        int status = q.requestStatus[head];
        // the status byte was located and bounds-checked when the request was parsed; the queue's memory table cannot
        // change while the queue runs (a change stops it first), so the region index is still valid
        q.memory.region(q.statusRegion[head]).mapping().set(ValueLayout.JAVA_BYTE, q.statusOffset[head], (byte) status);
        q.vq.pushUsed(head, status == VIRTIO_BLK_S_OK ? q.usedLengthBytes[head] : 1, q.ringDescriptors[head]);
        q.inflight[head] = false;
        q.inflightCount--;
        pushed(q, head);
    }

    /** A used element for {@code head} was pushed: it joins the next completion batch. */
    private static void pushed(QueueRunner q, int head) {
        q.usedPending = true;
        if (q.stats != null) {
            q.doneHeads[q.doneCount++] = head;
        }
        if (q.journaled || q.inflightRegion != null || q.packedRegion != null) {
            q.usedBatch[q.usedBatchCount++] = head;
        }
    }

    /** Completes a well-formed request the device does not execute with {@code status} (UNSUPP, IOERR). */
    private void answer(QueueRunner q, int head, int status) {
        if (status != VIRTIO_BLK_S_OK) {
            errors.incrementAndGet();
        }
        request.writeStatus(q.memory, status);
        q.requestStatus[head] = (byte) status;
        q.vq.pushUsed(head, 1, q.ringDescriptors[head]);
        pushed(q, head);
    }

    /** Completes a request the device will not execute: IOERR if the status byte was found, then the used element. */
    private void fail(QueueRunner q, int head, int descriptors, String why) {
        errors.incrementAndGet();
        if (why != null && errors.get() <= 16) {
            // logged for the first errors only (a hostile guest must not flood the log); all are counted
            LOG.log(System.Logger.Level.WARNING, "controller " + name + " queue " + q.index + ": " + why);
        }
        if (head < 0) {
            return; // no valid id: nothing can be returned to the guest for it
        }
        boolean hasStatus = request.hasStatus();
        if (hasStatus) {
            request.writeStatus(q.memory, VIRTIO_BLK_S_IOERR);
        }
        q.requestStatus[head] = VIRTIO_BLK_S_IOERR;
        q.vq.pushUsed(head, hasStatus ? 1 : 0, descriptors);
        pushed(q, head);
    }

    // ---- statistics (issue #5, virtnvme-shm/spec/stats.md "Writer"): a handful of plain stores per request ----

    /** Histograms or trace on: per-request timestamps of every segment are kept. */
    private static final int DETAILED_STATS_MASK =
            StatsDescriptor.HISTOGRAM_ENABLED_MASK | StatsDescriptor.TRACE_ENABLED_MASK;

    /** Request {@code head} was taken from the ring in this batch (one clock reading per batch). */
    private static void statsFetched(QueueRunner q, int head) {
        if (q.batchFetchNs == 0) {
            q.batchFetchNs = System.nanoTime();
        }
        q.fetchNs[head] = q.batchFetchNs;
        q.statsOp[head] = (byte) StatsDescriptor.OP_NONE;
        q.statsBytes[head] = 0;
        q.statsOffsetBytes[head] = 0;
        // the segment timestamps are not cleared: one older than fetchNs is a previous request's (not taken)
        q.fetchedHeads[q.fetchedCount++] = head;
    }

    /** Request {@code head} goes to the device as {@code op} (StatsDescriptor.OP_*). */
    private static void statsOp(QueueRunner q, int head, int op, long offsetBytes, long bytes) {
        if (q.stats != null) {
            q.statsOp[head] = (byte) op;
            q.statsBytes[head] = bytes;
            q.statsOffsetBytes[head] = offsetBytes;
        }
    }

    /** The batch's SQEs are published: its requests count in queue_depth; their submit time when detailed. */
    private static void statsSubmitted(QueueRunner q) {
        if ((q.statsFlags & DETAILED_STATS_MASK) != 0) {
            long nowNs = System.nanoTime();
            for (int i = 0; i < q.fetchedCount; i++) {
                q.submitNs[q.fetchedHeads[i]] = nowNs;
            }
        }
        q.stats.fetched(q.fetchedCount, q.batchFetchNs);
        q.fetchedCount = 0;
    }

    /** A command of request {@code head} completed: its device times (virtnvme.md §3.1), first submit, last CQE. */
    private static void statsDevice(QueueRunner q, int head, int cid) {
        if (q.deviceSubmitNs[head] < q.fetchNs[head]) {
            q.deviceSubmitNs[head] = q.qp.deviceSubmitNs(cid);
        }
        q.deviceCompleteNs[head] = q.qp.deviceCompleteNs(cid);
    }

    /** The used elements of {@link QueueRunner#doneHeads} were published at {@code usedNs}: counts them. */
    private static void statsPublished(QueueRunner q, long usedNs) {
        QueueStatsWriter stats = q.stats;
        boolean histogram = (q.statsFlags & StatsDescriptor.HISTOGRAM_ENABLED_MASK) != 0;
        boolean trace = (q.statsFlags & StatsDescriptor.TRACE_ENABLED_MASK) != 0;
        long notifyNs = histogram || trace ? System.nanoTime() : 0;
        for (int i = 0; i < q.doneCount; i++) {
            int head = q.doneHeads[i];
            int op = q.statsOp[head] & 0xFF;
            int status = q.requestStatus[head];
            stats.completed(op, q.statsBytes[head], usedNs - q.fetchNs[head], status != VIRTIO_BLK_S_OK);
            if (histogram && op < StatsDescriptor.OP_COUNT) {
                statsHistograms(q, head, op, usedNs, notifyNs);
            }
            if (trace) {
                long fetch = q.fetchNs[head];
                stats.trace(
                        op,
                        status,
                        q.statsOffsetBytes[head],
                        (int) Math.min(Integer.MAX_VALUE, q.statsBytes[head]),
                        fetch,
                        taken(q.submitNs[head], fetch),
                        taken(q.deviceSubmitNs[head], fetch),
                        taken(q.deviceCompleteNs[head], fetch),
                        usedNs,
                        notifyNs);
            }
        }
        q.doneCount = 0;
        stats.published(usedNs);
    }

    /** {@code ns} if it was taken for the request fetched at {@code fetchNs}, else 0 (a previous request's). */
    private static long taken(long ns, long fetchNs) {
        return ns >= fetchNs ? ns : 0;
    }

    /** One sample per segment whose two ends were taken for this request. */
    private static void statsHistograms(QueueRunner q, int head, int op, long usedNs, long notifyNs) {
        QueueStatsWriter stats = q.stats;
        long fetch = q.fetchNs[head];
        long submit = taken(q.submitNs[head], fetch);
        long deviceSubmit = taken(q.deviceSubmitNs[head], fetch);
        long deviceComplete = taken(q.deviceCompleteNs[head], fetch);
        if (submit != 0) {
            stats.recordLatency(StatsDescriptor.SEGMENT_FETCH_TO_SUBMIT, op, submit - fetch);
            if (deviceSubmit != 0) {
                stats.recordLatency(StatsDescriptor.SEGMENT_SUBMIT_TO_DEVICE, op, deviceSubmit - submit);
            }
        }
        if (deviceSubmit != 0 && deviceComplete != 0) {
            stats.recordLatency(StatsDescriptor.SEGMENT_DEVICE, op, deviceComplete - deviceSubmit);
        }
        if (deviceComplete != 0) {
            stats.recordLatency(StatsDescriptor.SEGMENT_DEVICE_TO_USED, op, usedNs - deviceComplete);
        }
        stats.recordLatency(StatsDescriptor.SEGMENT_USED_TO_NOTIFY, op, notifyNs - usedNs);
        stats.recordLatency(StatsDescriptor.SEGMENT_TOTAL, op, notifyNs - fetch);
    }

    private final class CompletionHandler implements VirtNvmeQueuePair.CompletionHandler {
        private QueueRunner q;

        CompletionHandler on(QueueRunner queue) {
            this.q = queue;
            return this;
        }

        @Override
        public void onCompletion(int cid, int statusField, int result) {
            int head = cid >= 0 && cid < q.cidRequest.length ? q.cidRequest[cid] : -1;
            if (head < 0) {
                errors.incrementAndGet();
                return; // not ours: a peer bug; nothing to answer
            }
            q.cidRequest[cid] = -1;
            if ((q.statsFlags & DETAILED_STATS_MASK) != 0) {
                statsDevice(q, head, cid);
            }
            // reusable once pollCompletions has stored the CQ head (before any submission of this process() call)
            q.freeCids[q.freeCidCount++] = cid;
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
            commandDone(q, head, ok);
        }
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
