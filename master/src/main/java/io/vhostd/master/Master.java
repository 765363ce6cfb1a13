package io.vhostd.master;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vertx.core.Vertx;
import io.vhostd.journal.JournalDescriptor;
import io.vhostd.master.bdev.Bdev;
import io.vhostd.master.bdev.NvmeProbe;
import io.vhostd.master.config.BdevConfig;
import io.vhostd.master.config.ConfigException;
import io.vhostd.master.config.ControllerConfig;
import io.vhostd.master.config.HugepagesConfig;
import io.vhostd.master.config.PrometheusConfig;
import io.vhostd.master.config.RpcSocketConfig;
import io.vhostd.master.config.VhostdConfig;
import io.vhostd.master.engine.DeviceEngine;
import io.vhostd.master.engine.Engines;
import io.vhostd.master.engine.QpairBinding;
import io.vhostd.master.engine.RegionTable;
import io.vhostd.master.health.HealthService;
import io.vhostd.master.hugepages.HugepagePool;
import io.vhostd.master.metrics.MetricsServer;
import io.vhostd.master.metrics.StatsSource;
import io.vhostd.master.registry.BdevException;
import io.vhostd.master.registry.BdevRegistry;
import io.vhostd.master.registry.PersistentRegistry;
import io.vhostd.master.rpc.RpcPeerPolicy;
import io.vhostd.master.rpc.RpcServer;
import io.vhostd.master.stats.HistogramSnapshot;
import io.vhostd.master.stats.StatsService;
import io.vhostd.rpc.RpcErrorCode;
import io.vhostd.rpc.RpcException;
import io.vhostd.rpc.RpcSpec;
import io.vhostd.shm.arena.HugepageArena;
import io.vhostd.shm.control.ControlChannel;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.control.HandoverWarmup;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.SdNotify;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.stats.IoCounters;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import java.io.IOException;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * The master process: start-up in DESIGN §1 order (registry, bdevs from the configuration and then from the registry,
 * each with its engine; huge pages and the arena; controllers' sockets and queue pairs; slave; RPC), then it waits;
 * {@link #shutdown} (SIGTERM) stops the slave first, so no guest I/O is in flight when the engines stop.
 *
 * <p>Bdevs can be created and deleted at run time over RPC ({@code bdev_*_create}, {@code
 * bdev_nvme_attach_controller}, {@code bdev_delete}); those are recorded in the registry file and recreated by the
 * next master. Controllers claim the bdev they serve in the {@link BdevRegistry}, which refuses to delete it.
 */
public final class Master implements AutoCloseable {
    private static final System.Logger LOG = System.getLogger(Master.class.getName());
    private static final ObjectMapper JSON = new ObjectMapper();

    /** VirtNvme queue depth: the largest virtqueue QEMU offers (queue-size max 1024), so one CID per head index. */
    public static final int QPAIR_DEPTH = 1024;

    /**
     * How the master is run.
     *
     * @param spawnSlave start the slave process; false runs the master alone (tests and tools: controllers get their
     *     sockets and queue pairs, but nothing serves them)
     * @param nvmeProbe where NVMe controllers are found
     * @param hugepagePool the kernel's huge page pool
     * @param listenFds controller name → a listening vhost-user socket this process inherited (vhost-user.rst "Backend
     *     program conventions", {@code --fd=FDNUM}): the controller serves it instead of creating its {@code socket},
     *     and the master never unlinks that path; the master owns (and closes) the fd
     */
    public record Options(
            boolean spawnSlave, NvmeProbe nvmeProbe, HugepagePool hugepagePool, Map<String, Integer> listenFds) {
        public Options {
            listenFds = Map.copyOf(listenFds);
        }

        /** Every controller creates its own socket. */
        public Options(boolean spawnSlave, NvmeProbe nvmeProbe, HugepagePool hugepagePool) {
            this(spawnSlave, nvmeProbe, hugepagePool, Map.of());
        }

        /** The production set-up: a slave, the host's sysfs and procfs (or those the system properties name). */
        public static Options defaults() {
            return new Options(true, new NvmeProbe(), new HugepagePool());
        }

        /** These options with {@code listenFds} instead. */
        public Options withListenFds(Map<String, Integer> fds) {
            return new Options(spawnSlave, nvmeProbe, hugepagePool, fds);
        }
    }

    private final VhostdConfig config;
    private final Options options;
    private final Path runDir;
    /** Controllers by name, in creation order; synchronized (RPC create/delete run next to the supervisor). */
    private final Map<String, ControllerRuntime> controllers =
            java.util.Collections.synchronizedMap(new LinkedHashMap<>());
    /** Serialises vhost_create_blk_controller and vhost_delete_controller (issue #5). */
    private final Object controllerLock = new Object();
    /** Arena offsets of queue pairs freed by vhost_delete_controller, reused before the arena's bump pointer. */
    private final java.util.ArrayDeque<Long> freeQpairOffsets = new java.util.ArrayDeque<>();

    private int nextNsid = 1;
    private final FdCustody custody = new FdCustody();
    private final RegionTable regions = new RegionTable();
    private final CountDownLatch stopped = new CountDownLatch(1);
    private final int maxSegments;
    private HugepageArena arena;
    private HugepagePool.Reservation reservation;
    private PersistentRegistry store;
    private BdevRegistry bdevs;
    private int controlListenFd = -1;
    private Path controlPath;
    private volatile SlaveProcess slave;
    /**
     * The standby: a started slave without controllers that waits to take over (issue #4); completes when it said
     * hello (exceptionally if it could not be started). Null before the first one is spawned.
     */
    private java.util.concurrent.CompletableFuture<SlaveProcess> standby;
    /**
     * A slave death less than this after the previous one (System.nanoTime) starts the next standby without {@code
     * standby_delay_ms}: with deaths 0.5 - 2.5 s apart (SlaveKillIT) the delay made most handovers wait for a standby
     * still starting, 1 - 2.7 s.
     */
    private static final long CRASH_LOOP_NS = 5_000_000_000L;
    /** When the last slave death was noticed (System.nanoTime), 0 before the first. */
    private long lastDeathNs;
    /** Counted down to start a {@link #standby} still waiting for its {@code standby_delay_ms} at once. */
    private CountDownLatch standbyGo = new CountDownLatch(0);

    /** How {@link #standby} is getting on: its process once spawned, to hurry it when a handover needs it. */
    private StandbyStart standbyStart = new StandbyStart();
    /** Each controller's session journal region (journal/spec/journal.md), formatted by the master. */
    private final Map<String, HugepageArena> journals = new LinkedHashMap<>();
    /** Each controller's stats region and the stats RPC methods (issue #5); created in {@link #start}. */
    private StatsService stats;

    private int nextSlaveNumber = 1;
    /** The class path (or jar) slaves are spawned from; {@code slave_upgrade} with a jar changes it (issue #4). */
    private volatile String slaveClassPath = System.getProperty("java.class.path");
    /** The slaves' AOT cache ({@code slave.aot_cache}). */
    private final SlaveAotCache aotCache;
    /** Handovers (a slave died) and rolling upgrades run one at a time; reentrant (an upgrade may fall back). */
    private final java.util.concurrent.locks.ReentrantLock supervisorLock =
            new java.util.concurrent.locks.ReentrantLock();
    /** The slave a rolling upgrade is moving controllers away from, or null (slave_get_slaves: "draining"). */
    private volatile SlaveProcess draining;
    /** A handover to the standby is in progress (the dead slave is still {@link #slave}). */
    private volatile boolean handingOver;
    /** One slave is spawned and accepted at a time (the control socket, the slave numbers). */
    private final Object spawnLock = new Object();

    private Vertx vertx;
    private RpcServer rpc;
    /** The Prometheus endpoint (issue #5); null when the configuration has no {@code prometheus} key. */
    private MetricsServer metrics;

    private volatile boolean shuttingDown;
    private int nextQpairId = 1;

    /**
     * Issue #4 master restart: what the previous master's serving slave handed back when it rejoined, until {@link
     * #startSlave} takes it over; null when no slave rejoined.
     */
    private SlaveRejoin rejoin;
    /** Issue #4 master restart: the queue pairs' resume points (h0, c0) of each re-adopted controller. */
    private final Map<String, List<ControlMessage.QpairResume>> resumed = new LinkedHashMap<>();
    /** How long a restarted master waits for the previous master's serving slave to rejoin. */
    private static final long REJOIN_TIMEOUT_MS = Long.getLong("vhostd.rejoin.timeout.ms", 15_000);

    /** A master with a slave, on the host's sysfs and procfs. */
    public Master(VhostdConfig config) {
        this(config, Options.defaults());
    }

    public Master(VhostdConfig config, Options options) {
        this.config = config;
        this.options = options;
        this.runDir = Path.of(config.runDir());
        this.aotCache = SlaveAotCache.open(config.slave().aotCache(), runDir);
        this.maxSegments = config.slave().maxSegments();
    }

    /** Brings everything up; returns when the slave serves every controller and the RPC socket listens. */
    public void start() throws Exception {
        Files.createDirectories(runDir);
        prepareRunDirAccess();
        store = PersistentRegistry.open(Path.of(config.registryPath()));
        bdevs = new BdevRegistry(maxSegments, options.nvmeProbe(), store);
        stats = new StatsService(
                () -> bdevs.list().stream().map(e -> e.bdev().name()).toList());
        String noUring = Engines.ioUringUnavailableReason();
        if (noUring != null) {
            LOG.log(System.Logger.Level.WARNING, noUring + ": file and device bdevs use the thread-pool engine");
        }
        for (int i = 0; i < config.bdevs().size(); i++) {
            BdevConfig b = config.bdevs().get(i);
            try {
                bdevs.create(b, false);
            } catch (BdevException e) {
                throw new IllegalStateException("bdevs[" + i + "] (" + b.name() + "): " + e.getMessage(), e);
            }
        }
        List<String> restored = bdevs.restore();
        LOG.log(
                System.Logger.Level.INFO,
                "registry " + store.file() + ": " + restored.size() + " bdev(s) recreated"
                        + (restored.isEmpty() ? "" : " " + restored));
        if (options.spawnSlave()) {
            rejoin = awaitRejoin();
        }
        startArena();
        for (ControllerConfig c : config.controllers()) {
            addController(c);
        }
        restoreControllers();
        if (options.spawnSlave()) {
            startSlave();
        }
        startRpc();
        startMetrics();
        LOG.log(System.Logger.Level.INFO, "vhostd master ready: " + readySummary());
    }

    /** The statistics of every controller (issue #5): iostat counters, histograms, trace. Null before {@link #start}. */
    public StatsService stats() {
        return stats;
    }

    /** What a ready master serves, one line (the log's "vhostd master ready" line and systemd's STATUS=). */
    public String readySummary() {
        return controllers.size() + " controller(s), " + (slave == null ? "no slave" : "slave pid " + slave.pid())
                + ", rpc " + config.rpcSocket();
    }

    private void startArena() {
        HugepagesConfig huge = config.hugepages();
        long perQpair = align(VirtNvmeDescriptor.lengthBytes(QPAIR_DEPTH, maxSegments), 4096);
        if (rejoin != null) {
            adoptArena(perQpair);
            return;
        }
        long needed = 0;
        for (ControllerConfig c : config.controllers()) {
            needed += perQpair * c.numQueues();
        }
        // controllers created over RPC and recreated from the registry (issue #5) need their queue pairs too
        for (JsonNode record : store.controllers()) {
            needed += perQpair
                    * Math.max(
                            0,
                            Math.min(
                                    ControllerConfig.MAX_NUM_QUEUES,
                                    record.path("num_queues").asInt(0)));
        }
        long size = Math.max(huge.arenaSizeBytes(), align(needed + perQpair, HugepagesConfig.HUGEPAGE_SIZE_BYTES));
        if (huge.reserve() > 0) {
            reservation = options.hugepagePool().reserve(huge.reserve(), huge.node());
            if (reservation.shortfallReason() == null) {
                LOG.log(
                        System.Logger.Level.INFO,
                        "hugepages: " + huge.reserve() + " requested, " + reservation.reserved() + " reserved ("
                                + reservation.added() + " added to " + reservation.poolFile() + ")");
            } else {
                LOG.log(
                        System.Logger.Level.WARNING,
                        "hugepages: " + huge.reserve() + " requested, " + reservation.reserved() + " reserved: "
                                + reservation.shortfallReason());
            }
            long reservedBytes = huge.reserve() * HugepagesConfig.HUGEPAGE_SIZE_BYTES;
            if (reservedBytes < size) {
                LOG.log(
                        System.Logger.Level.WARNING,
                        "hugepages: reserve " + huge.reserve() + " (" + reservedBytes + " bytes) is smaller than the"
                                + " arena (" + size + " bytes)");
            }
        }
        arena = HugepageArena.create("vhostd-arena", size, huge.enabled());
        if (arena.hugepages()) {
            LOG.log(System.Logger.Level.INFO, "arena: " + arena.sizeBytes() + " bytes on 2 MiB hugepages");
        } else {
            LOG.log(
                    System.Logger.Level.INFO,
                    "arena: " + arena.sizeBytes() + " bytes on a plain memfd (" + arenaFallbackReason() + ")");
        }
    }

    /** Why the arena is not on huge pages, or why the reservation fell short; null when all went as asked. */
    private String arenaFallbackReason() {
        if (!config.hugepages().enabled()) {
            return "hugepages disabled in config";
        }
        if (arena != null && !arena.hugepages()) {
            return arena.fallbackReason()
                    + (reservation != null && reservation.shortfallReason() != null
                            ? "; " + reservation.shortfallReason()
                            : "");
        }
        return reservation == null ? null : reservation.shortfallReason();
    }

    private void addController(ControllerConfig c) throws IOException {
        try {
            createController(c);
        } catch (BdevException | ArenaFullException e) {
            throw new IllegalStateException("controller " + c.name() + ": " + e.getMessage(), e);
        }
    }

    /** The arena cannot hold a controller's queue pairs (issue #5: answered {@code arena_full}). */
    static final class ArenaFullException extends Exception {
        private static final long serialVersionUID = 1L;

        ArenaFullException(String message) {
            super(message);
        }
    }

    /**
     * Claims the bdev, takes the queue pairs from the arena (freed ones first) and attaches them to the bdev's engine,
     * binds the socket (or takes the inherited one) and formats the journal; adds the controller to {@link
     * #controllers}. On any failure everything done so far is undone and the exception is thrown.
     */
    private ControllerRuntime createController(ControllerConfig c)
            throws BdevException, ArenaFullException, IOException {
        SlaveRejoin.Controller rejoined = rejoin == null ? null : rejoin.controllers.get(c.name());
        if (rejoined != null) {
            return adoptController(c, rejoined);
        }
        BdevRegistry.Entry entry = bdevs.claim(c.bdev(), c.name());
        Bdev bdev = entry.bdev();
        DeviceEngine engine = entry.engine();
        long length = VirtNvmeDescriptor.lengthBytes(QPAIR_DEPTH, maxSegments);
        List<Long> offsets = new ArrayList<>();
        List<ControlMessage.QpairRef> refs = new ArrayList<>();
        List<QpairBinding> bindings = new ArrayList<>();
        Integer inherited = options.listenFds().get(c.name());
        int listenFd = -1;
        HugepageArena journal = null;
        boolean created = false;
        try {
            for (int q = 0; q < c.numQueues(); q++) {
                offsets.add(allocateQpair(c, length));
            }
            listenFd = inherited != null ? inherited : listen(c.socket());
            int nsid = nextNsid++;
            for (int q = 0; q < c.numQueues(); q++) {
                long offset = offsets.get(q);
                int qpairId = nextQpairId++;
                VirtNvmeQueuePair qp = VirtNvmeQueuePair.format(
                        arena.segment().asSlice(offset, length), qpairId, QPAIR_DEPTH, maxSegments);
                int sqEfd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
                custody.hold(new FdCustody.Key(c.name(), "qpair_sq", q), sqEfd);
                int cqEfd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
                custody.hold(new FdCustody.Key(c.name(), "qpair_cq", q), cqEfd);
                QpairBinding binding = new QpairBinding(qp, sqEfd, cqEfd, regions, nsid);
                engine.attach(binding);
                refs.add(new ControlMessage.QpairRef(qpairId, offset, length));
                bindings.add(binding);
            }
            custody.hold(new FdCustody.Key(c.name(), "listen", 0), listenFd);
            journal = HugepageArena.create(
                    "vhostd-journal-" + c.name(),
                    JournalDescriptor.lengthBytes(c.numQueues(), QPAIR_DEPTH, JournalDescriptor.ENTRY_COPY_LENGTH),
                    false);
            JournalDescriptor.format(
                    journal.segment(), c.numQueues(), QPAIR_DEPTH, JournalDescriptor.ENTRY_COPY_LENGTH);
            journals.put(c.name(), journal);
            // virtnvme-shm/spec/stats.md: one region per controller, kept across slaves
            stats.createRegion(c.name(), bdev.name(), c.numQueues());
            ControllerRuntime runtime = runtime(c, bdev, listenFd, refs, bindings);
            controllers.put(c.name(), runtime);
            created = true;
            LOG.log(
                    System.Logger.Level.INFO,
                    "controller " + c.name() + ": " + c.type() + " on " + c.socket() + ", bdev " + bdev.name() + ", "
                            + c.numQueues() + " queue(s)");
            return runtime;
        } finally {
            if (!created) {
                for (ControlMessage.QpairRef ref : refs) {
                    engine.detach(ref.qpairId());
                }
                boolean listenHeld = custody.get(new FdCustody.Key(c.name(), "listen", 0)) >= 0;
                custody.entries(c.name()).keySet().forEach(custody::release);
                if (listenFd >= 0 && !listenHeld && inherited == null) {
                    Unistd.close(listenFd);
                }
                if (listenFd >= 0 && inherited == null) {
                    Files.deleteIfExists(Path.of(c.socket()));
                }
                if (journal != null) {
                    journals.remove(c.name(), journal);
                    journal.close();
                }
                stats.removeController(c.name());
                offsets.forEach(this::freeQpair);
                bdevs.release(c.bdev(), c.name());
            }
        }
    }

    /** The runtime of controller {@code c} on {@code bdev} with its socket and queue pairs. */
    private static ControllerRuntime runtime(
            ControllerConfig c,
            Bdev bdev,
            int listenFd,
            List<ControlMessage.QpairRef> qpairs,
            List<QpairBinding> bindings) {
        return new ControllerRuntime(
                c.name(),
                c.type(),
                bdev,
                c.socket(),
                listenFd,
                c.numQueues(),
                c.serial(),
                c.readOnly() || bdev.readOnly(),
                List.copyOf(qpairs),
                List.copyOf(bindings));
    }

    /** Arena space for one queue pair: a freed one first, else from the arena. */
    private long allocateQpair(ControllerConfig c, long lengthBytes) throws ArenaFullException {
        synchronized (freeQpairOffsets) {
            Long freed = freeQpairOffsets.pollFirst();
            if (freed != null) {
                return freed;
            }
        }
        try {
            return arena.allocate(lengthBytes, 4096);
        } catch (IllegalStateException e) {
            throw new ArenaFullException("controller " + c.name() + " needs " + c.numQueues() + " queue pair(s) of "
                    + lengthBytes + " bytes; the arena (" + arena.sizeBytes()
                    + " bytes, hugepages.arena_size_bytes) is full: " + e.getMessage());
        }
    }

    /** Puts a queue pair's arena space on the free list (every queue pair has the same length). */
    private void freeQpair(long offset) {
        synchronized (freeQpairOffsets) {
            freeQpairOffsets.addFirst(offset);
        }
    }

    /** Creates the listening vhost-user socket; refuses a path another process is still serving. */
    private static int listen(String socketPath) throws IOException {
        Path path = Path.of(socketPath);
        if (path.getParent() != null) {
            Files.createDirectories(path.getParent());
        }
        if (Files.exists(path)) {
            if (isLive(socketPath)) {
                throw new IllegalStateException(socketPath + " is served by another process");
            }
            Files.delete(path);
        }
        int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
        try {
            Socket.bind(fd, socketPath);
            Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-rw----"));
            Socket.listen(fd, 16);
            return fd;
        } catch (RuntimeException e) {
            Unistd.close(fd);
            throw e;
        }
    }

    private static boolean isLive(String socketPath) {
        int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
        try {
            Socket.connect(fd, socketPath);
            return true;
        } catch (RuntimeException e) {
            return false;
        } finally {
            Unistd.close(fd);
        }
    }

    private void startSlave() throws Exception {
        if (exitWatch == null) {
            exitWatch = SlaveExitWatch.start();
        }
        if (controlListenFd < 0) {
            bindControlSocket();
        }
        if (rejoin != null) {
            slave = finishRejoin();
        } else {
            slave = connectSlave();
            sendControllers(slave, Set.of());
        }
        awaitListening(slave);
        watch(slave);
        writeSlaveState(slave);
        trainAotCacheAfter(startStandby(), slaveClassPath);
        warmUpHandoverCodec();
        rehearseQpairResetInBackground();
    }

    private void bindControlSocket() throws IOException {
        controlPath = runDir.resolve("master.sock");
        Files.deleteIfExists(controlPath);
        controlListenFd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_SEQPACKET | Socket.SOCK_CLOEXEC, 0);
        Socket.bind(controlListenFd, controlPath.toString());
        Files.setPosixFilePermissions(controlPath, PosixFilePermissions.fromString("rw-------"));
        Socket.listen(controlListenFd, 4);
    }

    // --- master restart (issue #4, control-channel.md "Master restart"): re-adopting the previous master's slave ---

    private Path slaveStateFile() {
        return runDir.resolve(SlaveRejoin.STATE_FILE);
    }

    /** Records {@code serving} in the state file a restarted master reads; a failure is logged (no re-adoption). */
    private void writeSlaveState(SlaveProcess serving) {
        try {
            SlaveRejoin.writeState(slaveStateFile(), serving.slaveId(), serving.pid());
        } catch (IOException | RuntimeException e) {
            LOG.log(
                    System.Logger.Level.WARNING,
                    "cannot write " + slaveStateFile() + " (a restarted master will not re-adopt the slave): " + e);
        }
    }

    /**
     * At start: when the state file names a serving slave of a previous master that still runs, binds the control
     * socket and waits up to {@link #REJOIN_TIMEOUT_MS} for it to rejoin, checks what it hands back against the
     * configuration and registers its guest memory regions. Anything wrong: the slave is refused and killed (its
     * front-ends see the connections close and reconnect; the inflight region keeps their requests) and the master
     * starts fresh.
     *
     * @return the rejoined slave, or null (start fresh)
     * @throws IllegalStateException if the master that wrote the state file still runs
     */
    private SlaveRejoin awaitRejoin() throws Exception {
        SlaveRejoin.State state;
        try {
            state = SlaveRejoin.readState(slaveStateFile());
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, slaveStateFile() + " unreadable, not re-adopting: " + e.getMessage());
            return null;
        }
        if (state == null) {
            return null;
        }
        if (state.masterAlive() && !awaitExit(state.masterPid(), 10_000)) {
            throw new IllegalStateException(
                    "the master that wrote " + slaveStateFile() + " (pid " + state.masterPid() + ") still runs");
        }
        if (!state.slaveAlive()) {
            LOG.log(
                    System.Logger.Level.INFO,
                    "the previous master's slave " + state.slaveId() + " (pid " + state.slavePid()
                            + ") is gone: starting fresh");
            return null;
        }
        long waitStartNs = System.nanoTime();
        LOG.log(
                System.Logger.Level.WARNING,
                "the previous master (pid " + state.masterPid() + ") died; waiting up to " + REJOIN_TIMEOUT_MS
                        + " ms for its slave " + state.slaveId() + " (pid " + state.slavePid() + ") to rejoin");
        bindControlSocket();
        AdoptedProcess process;
        try {
            process = new AdoptedProcess(state.slavePid());
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.INFO, "slave " + state.slaveId() + " exited meanwhile: starting fresh");
            return null;
        }
        SlaveRejoin r = null;
        List<Integer> registered = new ArrayList<>();
        try {
            int fd = acceptFrom(state.slavePid(), process::isAlive, REJOIN_TIMEOUT_MS);
            r = SlaveRejoin.receive(new ControlChannel(fd), REJOIN_TIMEOUT_MS);
            String problem = rejoinProblem(r);
            if (problem != null) {
                throw new IllegalStateException(problem);
            }
            for (SlaveRejoin.Region region : r.regions) {
                regions.register(
                        region.spec.regionId(), region.fd, region.spec.sizeBytes(), region.spec.mmapOffsetBytes());
                region.fd = -1;
                registered.add(region.spec.regionId());
            }
        } catch (Exception e) {
            LOG.log(
                    System.Logger.Level.ERROR,
                    "slave " + state.slaveId() + " (pid " + state.slavePid() + ") not re-adopted, stopping it: "
                            + e.getMessage());
            if (r != null) {
                try {
                    r.channel.send(new ControlMessage.Rejoined(e.getMessage(), List.of()));
                } catch (RuntimeException ignored) {
                    // it is killed anyway
                }
                r.closeUntaken();
                r.channel.close();
            }
            registered.forEach(regions::unregister);
            process.destroyForcibly();
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                throw new IllegalStateException("slave pid " + state.slavePid() + " does not exit after SIGKILL");
            }
            process.closeWhenExited();
            return null;
        }
        process.closeWhenExited();
        r.process = process;
        int maxNsid = 0;
        int maxQpairId = 0;
        for (SlaveRejoin.Controller c : r.controllers.values()) {
            maxNsid = Math.max(maxNsid, c.spec.nsid());
            for (ControlMessage.QpairRef q : c.spec.qpairs()) {
                maxQpairId = Math.max(maxQpairId, q.qpairId());
            }
        }
        nextNsid = maxNsid + 1;
        nextQpairId = maxQpairId + 1;
        nextSlaveNumber = Integer.parseInt(r.hello.slaveId().substring("slave-".length())) + 1;
        LOG.log(
                System.Logger.Level.INFO,
                "slave " + r.hello.slaveId() + " (pid " + r.hello.pid() + ") rejoined with "
                        + r.controllers.keySet() + ", " + r.held.size() + " session fd(s), " + r.regions.size()
                        + " guest memory region(s), " + (System.nanoTime() - waitStartNs) / 1_000 + " us after this"
                        + " master began waiting");
        return r;
    }

    /** Waits up to {@code timeoutMs} for process {@code pid} to exit (a pidfd); true when it has (or never was). */
    private static boolean awaitExit(long pid, long timeoutMs) {
        int pidfd;
        try {
            pidfd = io.vhostd.shm.linux.Pidfd.pidfd_open((int) pid, 0);
        } catch (RuntimeException e) {
            return true; // ESRCH: gone
        }
        try {
            LOG.log(System.Logger.Level.INFO, "waiting for the previous master (pid " + pid + ") to exit");
            return (io.vhostd.shm.linux.Poll.poll(pidfd, io.vhostd.shm.linux.Poll.POLLIN, (int) timeoutMs)
                            & io.vhostd.shm.linux.Poll.POLLIN)
                    != 0;
        } finally {
            Unistd.close(pidfd);
        }
    }

    /**
     * Why what a rejoining slave handed back cannot be taken over, or null: other versions (as {@link
     * #incompatibility}), or a controller that is not configured (configuration or registry) with the same bdev,
     * queue count and queue pair geometry, or a queue pair outside the arena.
     */
    private String rejoinProblem(SlaveRejoin r) {
        ControlMessage.Rejoin h = r.hello;
        String incompatible = incompatibility(new ControlMessage.Hello(
                h.protocolVersion(), h.pid(), h.build(), h.journalVersion(), h.virtNvmeVersion()));
        if (incompatible != null) {
            return incompatible;
        }
        Map<String, String[]> defined = new HashMap<>();
        for (ControllerConfig c : config.controllers()) {
            defined.put(c.name(), new String[] {c.bdev(), Integer.toString(c.numQueues())});
        }
        for (JsonNode record : store.controllers()) {
            defined.putIfAbsent(record.path("name").asText(), new String[] {
                record.path("bdev").asText(),
                Integer.toString(record.path("num_queues").asInt(1))
            });
        }
        long qpairLength = VirtNvmeDescriptor.lengthBytes(QPAIR_DEPTH, maxSegments);
        Set<Integer> qpairIds = new HashSet<>();
        Set<Integer> nsids = new HashSet<>();
        for (SlaveRejoin.Controller c : r.controllers.values()) {
            ControlMessage.RejoinController m = c.spec;
            String[] d = defined.get(m.name());
            if (d == null) {
                return "controller " + m.name() + " is not configured any more";
            }
            if (!d[0].equals(m.bdev()) || !d[1].equals(Integer.toString(m.numQueues()))) {
                return "controller " + m.name() + " is configured with bdev " + d[0] + " and " + d[1]
                        + " queue(s), the slave serves bdev " + m.bdev() + " with " + m.numQueues();
            }
            if (m.maxSegments() != maxSegments) {
                return "controller " + m.name() + ": the slave uses " + m.maxSegments() + " segments per command, this"
                        + " master " + maxSegments;
            }
            // the slave knows its mapping's length: the journal's, rounded up to whole pages
            long journalBytes =
                    JournalDescriptor.lengthBytes(m.numQueues(), QPAIR_DEPTH, JournalDescriptor.ENTRY_COPY_LENGTH);
            if (m.journalLengthBytes() < journalBytes) {
                return "controller " + m.name() + ": journal of " + m.journalLengthBytes() + " bytes, expected "
                        + journalBytes;
            }
            if (m.nsid() <= 0 || !nsids.add(m.nsid())) {
                return "controller " + m.name() + ": nsid " + m.nsid() + " is not positive or is used twice";
            }
            for (ControlMessage.QpairRef q : m.qpairs()) {
                if (q == null
                        || q.lengthBytes() != qpairLength
                        || q.arenaOffsetBytes() < 0
                        || q.arenaOffsetBytes() % 4096 != 0
                        || q.arenaOffsetBytes() > h.arenaSizeBytes() - qpairLength
                        || q.qpairId() < 0
                        || q.qpairId() > 65535
                        || !qpairIds.add(q.qpairId())) {
                    return "controller " + m.name() + ": queue pair " + q + " does not fit the arena";
                }
            }
        }
        return null;
    }

    /** The arena of the rejoined slave: its queue pairs are allocated, the gaps between them are free again. */
    private void adoptArena(long perQpair) {
        arena = HugepageArena.attach(rejoin.arenaFd, rejoin.hello.arenaSizeBytes());
        rejoin.arenaFd = -1;
        Set<Long> used = new HashSet<>();
        long end = 0;
        for (SlaveRejoin.Controller c : rejoin.controllers.values()) {
            for (ControlMessage.QpairRef q : c.spec.qpairs()) {
                arena.markAllocated(q.arenaOffsetBytes(), q.lengthBytes());
                used.add(q.arenaOffsetBytes());
                end = Math.max(end, q.arenaOffsetBytes() + q.lengthBytes());
            }
        }
        // the gaps are reusable only when every queue pair sits on the allocation grid (the bump allocator's)
        boolean onGrid = used.stream().allMatch(u -> u % perQpair == 0);
        for (long offset = 0; onGrid && offset + perQpair <= end; offset += perQpair) {
            if (!used.contains(offset)) {
                freeQpair(offset);
            }
        }
        LOG.log(
                System.Logger.Level.INFO,
                "arena: " + arena.sizeBytes() + " bytes taken over from the rejoined slave"
                        + (arena.hugepages() ? " (2 MiB hugepages)" : ""));
    }

    /**
     * {@link #createController} for a controller the rejoined slave serves: claims the bdev, attaches its queue pairs
     * as they are (virtnvme.md §10.2: SQ head and CQ tail recovered) to the engine, and takes the listening socket,
     * eventfds, journal, stats region and session fds into custody. The commands the dead master had fetched are
     * resubmitted by the slave once it has the resume points ({@code rejoined}).
     */
    private ControllerRuntime adoptController(ControllerConfig c, SlaveRejoin.Controller r)
            throws BdevException, IOException {
        BdevRegistry.Entry entry = bdevs.claim(c.bdev(), c.name());
        Bdev bdev = entry.bdev();
        DeviceEngine engine = entry.engine();
        List<QpairBinding> bindings = new ArrayList<>();
        List<ControlMessage.QpairResume> resume = new ArrayList<>();
        for (int q = 0; q < r.spec.numQueues(); q++) {
            ControlMessage.QpairRef ref = r.spec.qpairs().get(q);
            VirtNvmeQueuePair qp =
                    VirtNvmeQueuePair.attach(arena.segment().asSlice(ref.arenaOffsetBytes(), ref.lengthBytes()));
            if (qp.qpairId() != ref.qpairId() || qp.depth() != QPAIR_DEPTH || qp.maxSegments() != maxSegments) {
                throw new IllegalStateException("controller " + c.name() + ": queue pair " + q + " in the arena is "
                        + qp.qpairId() + "/" + qp.depth() + "/" + qp.maxSegments() + ", the slave said " + ref);
            }
            custody.hold(new FdCustody.Key(c.name(), "qpair_sq", q), r.sqEventFds[q]);
            custody.hold(new FdCustody.Key(c.name(), "qpair_cq", q), r.cqEventFds[q]);
            QpairBinding binding = new QpairBinding(qp, r.sqEventFds[q], r.cqEventFds[q], regions, r.spec.nsid());
            r.sqEventFds[q] = -1;
            r.cqEventFds[q] = -1;
            // the resume point before the engine moves it
            resume.add(new ControlMessage.QpairResume(q, qp.sqHeadIndex(), qp.cqTailIndex()));
            engine.attach(binding);
            // virtnvme.md §10.2: a slave asleep on an event index the dead master armed is woken once
            Eventfd.eventfd_write(binding.cqEventFd(), 1);
            bindings.add(binding);
        }
        custody.hold(new FdCustody.Key(c.name(), "listen", 0), r.listenFd);
        int listenFd = r.listenFd;
        r.listenFd = -1;
        HugepageArena journal = HugepageArena.attach(
                r.journalFd,
                JournalDescriptor.lengthBytes(r.spec.numQueues(), QPAIR_DEPTH, JournalDescriptor.ENTRY_COPY_LENGTH));
        r.journalFd = -1;
        journals.put(c.name(), journal);
        if (r.statsFd >= 0) {
            int fd = r.statsFd;
            r.statsFd = -1;
            stats.adoptRegion(c.name(), bdev.name(), c.numQueues(), fd);
        } else {
            stats.createRegion(c.name(), bdev.name(), c.numQueues());
        }
        for (SlaveRejoin.HeldFd h : rejoin.held) {
            if (h.controller.equals(c.name()) && h.fd >= 0) {
                custody.hold(new FdCustody.Key(c.name(), h.what, h.index), h.fd);
                h.fd = -1;
            }
        }
        ControllerRuntime runtime = runtime(c, bdev, listenFd, r.spec.qpairs(), bindings);
        controllers.put(c.name(), runtime);
        resumed.put(c.name(), List.copyOf(resume));
        LOG.log(
                System.Logger.Level.INFO,
                "controller " + c.name() + ": taken back from the rejoined slave, queue pairs resumed at " + resume);
        return runtime;
    }

    /**
     * Makes the rejoined slave the serving one: answers {@code rejoined} with each controller's resume points (the
     * slave then resubmits what the dead master lost), and sends it the configured controllers it did not have.
     */
    private SlaveProcess finishRejoin() {
        SlaveRejoin r = rejoin;
        rejoin = null;
        SlaveProcess s = new SlaveProcess(r.hello.slaveId(), r.process, r.channel, regions, custody, controllers);
        s.buildInfo(
                r.hello.build(),
                r.process
                        .toHandle()
                        .info()
                        .startInstant()
                        .map(java.time.Instant::toEpochMilli)
                        .orElse(0L));
        List<ControlMessage.ControllerResume> answer = new ArrayList<>();
        for (String name : r.controllers.keySet()) {
            List<ControlMessage.QpairResume> q = resumed.get(name);
            if (q == null) {
                answer.add(
                        new ControlMessage.ControllerResume(name, "not taken back (see the master's log)", List.of()));
            } else {
                answer.add(new ControlMessage.ControllerResume(name, null, q));
                s.listening(name).complete(null);
            }
        }
        r.closeUntaken();
        s.start();
        r.channel.send(new ControlMessage.Rejoined(null, answer));
        sendControllers(s, Set.of(), name -> !resumed.containsKey(name));
        LOG.log(
                System.Logger.Level.INFO,
                "slave " + s.slaveId() + " (pid " + s.pid() + ") re-adopted: it serves " + resumed.keySet() + " again");
        resumed.clear();
        return s;
    }

    /**
     * The master's codec warm-up may take this long (wall time): it runs once per master, in the background, at nice
     * 19, so on a busy machine it gets little CPU.
     */
    private static final long WARM_UP_BUDGET_NS = 60_000_000_000L;

    /**
     * Compiles the control codec for the messages of a handover ({@link HandoverWarmup}) before a guest waits on them
     * (issue #4): the master receives and sends them only then. On a thread of its own at nice 19; a failure is
     * logged, the master runs without.
     */
    private static void warmUpHandoverCodec() {
        // in the background, at the lowest priority: after a master restart the guests are running
        HandoverWarmup.startInBackground(WARM_UP_BUDGET_NS);
    }

    /** Queue pair id of the reset rehearsal's scratch queue pair: the real ones count from 1 ({@link #nextQpairId}). */
    static final int REHEARSAL_QPAIR_ID = 0;

    /** Attach + detach rounds of the reset rehearsal, per engine. */
    private static final int RESET_REHEARSAL_ROUNDS = 300;

    /**
     * Nice value of the reset rehearsal's thread. Not 19: each round waits for the engine thread, and at 19 on a busy
     * machine 1000 rounds took 6 - 7 s, longer than a master restart is from the next slave death in
     * scripts/bench-handover.sh. The rounds are short (~0.1 ms of CPU each).
     */
    private static final int RESET_REHEARSAL_NICE = 0;

    /**
     * Runs the queue-pair reset of a handover ({@link #resetQpairs}: format, engine attach, engine detach) on a
     * scratch queue pair with each controller's engine, {@link #RESET_REHEARSAL_ROUNDS} times, on a thread of its own
     * (issue #4). A master restarted under running guests otherwise runs that code for the first time when the next
     * slave dies: the reset took 5 - 12 ms then against ~2 ms later (docs/benchmarks.md, session 5). The scratch
     * queue pair has no commands and no guest memory; an engine that refuses it (full or stopped) ends the rehearsal,
     * which is logged.
     */
    private void rehearseQpairResetInBackground() {
        Set<DeviceEngine> engines = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        for (ControllerRuntime c : controllerList()) {
            bdevs.get(c.bdev().name()).ifPresent(e -> engines.add(e.engine()));
        }
        if (engines.isEmpty()) {
            return;
        }
        Thread.ofPlatform().name("reset-rehearsal").daemon(true).start(() -> {
            io.vhostd.shm.linux.Priority.niceCurrentThread(RESET_REHEARSAL_NICE);
            long startNs = System.nanoTime();
            try {
                int rounds = rehearseQpairReset(
                        engines, RESET_REHEARSAL_ROUNDS, QPAIR_DEPTH, maxSegments, () -> shuttingDown);
                LOG.log(
                        System.Logger.Level.INFO,
                        "queue pair reset rehearsal: " + rounds + " rounds on " + engines.size() + " engine(s) in "
                                + (System.nanoTime() - startNs) / 1_000_000 + " ms");
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "queue pair reset rehearsal stopped: " + e);
            }
        });
    }

    /**
     * {@code rounds} times per engine: formats a scratch queue pair ({@link #REHEARSAL_QPAIR_ID}, no guest memory),
     * attaches it and detaches it again, as {@link #resetQpairs} does. Stops early when {@code stop} says so.
     *
     * @return the rounds done
     * @throws IllegalStateException if an engine stopped or serves its maximum of queue pairs
     */
    static int rehearseQpairReset(
            java.util.Collection<DeviceEngine> engines,
            int rounds,
            int depth,
            int maxSegments,
            java.util.function.BooleanSupplier stop) {
        int done = 0;
        int sqEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        int cqEventFd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        try (java.lang.foreign.Arena scratch = java.lang.foreign.Arena.ofShared();
                RegionTable noRegions = new RegionTable()) {
            java.lang.foreign.MemorySegment memory =
                    scratch.allocate(VirtNvmeDescriptor.lengthBytes(depth, maxSegments), 4096);
            for (DeviceEngine engine : engines) {
                for (int i = 0; i < rounds && !stop.getAsBoolean(); i++) {
                    VirtNvmeQueuePair qp = VirtNvmeQueuePair.format(memory, REHEARSAL_QPAIR_ID, depth, maxSegments);
                    engine.attach(new QpairBinding(qp, sqEventFd, cqEventFd, noRegions, 1));
                    engine.detach(REHEARSAL_QPAIR_ID);
                    done++;
                }
            }
        } finally {
            io.vhostd.shm.linux.Unistd.close(sqEventFd);
            io.vhostd.shm.linux.Unistd.close(cqEventFd);
        }
        return done;
    }

    // --- slave replacement (issue #4): a warm standby takes the controllers of a slave that died ---

    /** Spawns a slave, accepts its control connection, checks its hello and welcomes it with the arena. */
    private SlaveProcess connectSlave() throws Exception {
        return connectSlave(slaveClassPath);
    }

    /** {@link #connectSlave()} from {@code classPath} (a jar, or the master's own class path). */
    private SlaveProcess connectSlave(String classPath) throws Exception {
        return connectSlave(classPath, p -> {});
    }

    /** {@link #connectSlave(String)}; {@code spawned} gets the process as soon as it is spawned (before its hello). */
    private SlaveProcess connectSlave(String classPath, java.util.function.Consumer<Process> spawned) throws Exception {
        synchronized (spawnLock) {
            String slaveId = "slave-" + nextSlaveNumber++;
            long spawnedUnixMs = System.currentTimeMillis();
            Process process = spawnSlave(slaveId, classPath);
            spawned.accept(process);
            return connectSlaveLocked(slaveId, spawnedUnixMs, process, classPath);
        }
    }

    private SlaveProcess connectSlaveLocked(String slaveId, long spawnedUnixMs, Process process, String classPath)
            throws Exception {
        int fd = acceptFrom(process, 30_000);
        ControlChannel channel = new ControlChannel(fd);
        ControlChannel.Incoming hello = channel.receive();
        if (hello == null || !(hello.message() instanceof ControlMessage.Hello h)) {
            throw new IllegalStateException("slave did not say hello: " + (hello == null ? "EOF" : hello.message()));
        }
        String incompatible = incompatibility(h);
        if (incompatible != null) {
            // refused before it gets the arena: it sees the channel close and exits
            channel.close();
            process.destroyForcibly();
            process.waitFor(5, TimeUnit.SECONDS);
            throw new SlaveIncompatibleException("slave " + slaveId + " (pid " + process.pid() + ", build " + h.build()
                    + " from " + classPath + ") refused: " + incompatible);
        }
        channel.send(
                new ControlMessage.Welcome(ControlMessage.PROTOCOL_VERSION, slaveId, arena.sizeBytes()), arena.fd());
        SlaveProcess started = new SlaveProcess(slaveId, process, channel, regions, custody, controllers);
        started.buildInfo(classPath, spawnedUnixMs);
        started.start();
        return started;
    }

    /**
     * Why a slave that said {@code hello} cannot work with this master, or null: another control protocol, or
     * another major journal or VirtNvme layout version (a minor version only adds fields an older reader ignores:
     * journal.md §11, virtnvme.md).
     */
    static String incompatibility(ControlMessage.Hello h) {
        List<String> problems = new ArrayList<>();
        if (h.protocolVersion() != ControlMessage.PROTOCOL_VERSION) {
            problems.add(
                    "control protocol " + h.protocolVersion() + " (master " + ControlMessage.PROTOCOL_VERSION + ")");
        }
        if (org.agrona.SemanticVersion.major(h.journalVersion()) != JournalDescriptor.MAJOR_VERSION) {
            problems.add("journal version " + org.agrona.SemanticVersion.toString(h.journalVersion()) + " (master "
                    + org.agrona.SemanticVersion.toString(JournalDescriptor.VERSION) + ")");
        }
        if (org.agrona.SemanticVersion.major(h.virtNvmeVersion()) != VirtNvmeDescriptor.MAJOR_VERSION) {
            problems.add("VirtNvme version " + org.agrona.SemanticVersion.toString(h.virtNvmeVersion()) + " (master "
                    + org.agrona.SemanticVersion.toString(VirtNvmeDescriptor.VERSION) + ")");
        }
        return problems.isEmpty() ? null : "incompatible " + String.join(", ", problems);
    }

    /**
     * Sends every controller to {@code target}: for those in {@code adopt} first the session to continue (the fds in
     * custody), then the journal and the controller itself.
     */
    private void sendControllers(SlaveProcess target, Set<String> adopt) {
        sendControllers(target, adopt, name -> true);
    }

    /** {@link #sendControllers(SlaveProcess, Set)} for the controllers {@code which} accepts (issue #5: one new one). */
    private void sendControllers(SlaveProcess target, Set<String> adopt, java.util.function.Predicate<String> which) {
        ControlChannel channel = target.channel();
        for (ControllerRuntime c : controllerList()) {
            if (!which.test(c.name())) {
                continue;
            }
            if (adopt.contains(c.name())) {
                List<ControlMessage.AdoptedFd> refs = new ArrayList<>();
                List<Integer> fds = new ArrayList<>();
                for (Map.Entry<FdCustody.Key, Integer> e :
                        custody.entries(c.name()).entrySet()) {
                    if (SlaveProcess.SESSION_FDS.contains(e.getKey().what())) {
                        refs.add(new ControlMessage.AdoptedFd(
                                e.getKey().what(), e.getKey().index()));
                        fds.add(e.getValue());
                    }
                }
                channel.send(
                        new ControlMessage.AdoptSession(c.name(), refs),
                        fds.stream().mapToInt(Integer::intValue).toArray());
            }
            sendRegions(channel, c);
            channel.send(addControllerOf(c), controllerFds(c));
        }
    }

    /** {@code controller_stats} (when the controller has a region) and {@code controller_journal} of {@code c}. */
    private void sendRegions(ControlChannel channel, ControllerRuntime c) {
        HugepageArena statsRegion = stats.region(c.name());
        if (statsRegion != null) {
            channel.send(new ControlMessage.ControllerStats(c.name(), statsRegion.sizeBytes()), statsRegion.fd());
        }
        HugepageArena journal = journals.get(c.name());
        channel.send(new ControlMessage.ControllerJournal(c.name(), journal.sizeBytes()), journal.fd());
    }

    /** The {@code add_controller} description of {@code c}. */
    private ControlMessage.AddController addControllerOf(ControllerRuntime c) {
        return new ControlMessage.AddController(
                c.name(),
                c.bdev().name(),
                c.bindings().get(0).nsid(),
                c.bdev().sizeBytes(),
                c.bdev().blockSizeBytes(),
                c.readOnly(),
                c.serial(),
                c.numQueues(),
                maxSegments,
                c.qpairs());
    }

    /** The fds of {@code add_controller} / {@code prepare_controller}: the listening socket, per queue pair SQ/CQ eventfd. */
    private static int[] controllerFds(ControllerRuntime c) {
        int[] fds = new int[1 + 2 * c.numQueues()];
        fds[0] = c.listenFd();
        for (int q = 0; q < c.numQueues(); q++) {
            fds[1 + 2 * q] = c.bindings().get(q).sqEventFd();
            fds[2 + 2 * q] = c.bindings().get(q).cqEventFd();
        }
        return fds;
    }

    private void awaitListening(SlaveProcess target) throws Exception {
        for (ControllerRuntime c : controllerList()) {
            try {
                target.listening(c.name()).get(30, TimeUnit.SECONDS);
            } catch (java.util.concurrent.TimeoutException e) {
                throw new IllegalStateException("slave did not take controller " + c.name() + " within 30 s");
            }
        }
    }

    /**
     * Hands the controllers to the standby when {@code serving} dies (unless the master is shutting down): as soon as
     * the kernel reports its last thread exiting ({@link SlaveExitWatch}), or when the process is gone, whichever
     * comes first; the later notice finds the slave replaced.
     */
    private void watch(SlaveProcess serving) {
        SlaveExitWatch w = exitWatch;
        Runnable exiting = () -> {
            serving.markExiting();
            slaveGone(serving);
        };
        if (w != null) {
            w.onExiting(serving.pid(), exiting);
        }
        serving.process().onExit().thenAccept(p -> {
            if (w != null) {
                w.forget(p.pid(), exiting);
            }
            slaveGone(serving);
        });
    }

    /** Reports the slave TASKSTATS reported exiting, or that exited; null before the first slave started. */
    private volatile SlaveExitWatch exitWatch;

    private void slaveGone(SlaveProcess s) {
        if (!shuttingDown) {
            Thread.ofPlatform().name("handover-" + s.slaveId()).start(() -> handOver(s));
        }
    }

    /**
     * Takes the standby (ready, still starting or still waiting to start) away from {@link #standby}; null when there
     * is none. One still waiting for its {@code standby_delay_ms} starts at once.
     */
    private synchronized java.util.concurrent.CompletableFuture<SlaveProcess> takeStandby() {
        java.util.concurrent.CompletableFuture<SlaveProcess> taken = standby;
        standby = null;
        standbyGo.countDown();
        return taken;
    }

    /**
     * {@link #takeStandby()} for a handover that waits for it: a standby still warming up is told to stop warming up
     * and say hello at once ({@link SlaveProcess#hurry}): a slave whose JIT has not compiled the data path yet serves
     * after tens of milliseconds, one that finishes its warm-up (JVM start, classes, codec, rehearsal) after seconds on
     * a loaded host (slave deaths 0.5 - 2.5 s apart in SlaveKillIT).
     */
    private synchronized java.util.concurrent.CompletableFuture<SlaveProcess> takeStandbyNow() {
        java.util.concurrent.CompletableFuture<SlaveProcess> taken = takeStandby();
        if (taken != null && !taken.isDone()) {
            standbyStart.hurry();
        }
        return taken;
    }

    /**
     * A standby on its way ({@link #startStandby}): its process once spawned and whether a handover waits for it. The
     * two volatile fields are written and read in opposite orders by {@link #spawned} and {@link #hurry}, so at least
     * one of the two hurries the process.
     */
    private static final class StandbyStart {
        private volatile Process process;
        private volatile boolean hurry;
        private final java.util.concurrent.atomic.AtomicBoolean hurried =
                new java.util.concurrent.atomic.AtomicBoolean();

        void spawned(Process p) {
            process = p;
            if (hurry) {
                hurryOnce(p);
            }
        }

        void hurry() {
            hurry = true;
            Process p = process;
            if (p != null) {
                hurryOnce(p);
            }
        }

        /** Both sides may see the other: the byte is written (and logged) once. */
        private void hurryOnce(Process p) {
            if (hurried.compareAndSet(false, true)) {
                SlaveProcess.hurry(p);
            }
        }
    }

    /**
     * Makes the AOT cache of the slaves spawned from {@code classPath} ({@link SlaveAotCache#trainInBackground}) once
     * {@code standby} said hello or failed: after a standby's warm-up, not beside it, since a training run that shares
     * the CPU gathers thin profiles.
     */
    private void trainAotCacheAfter(java.util.concurrent.CompletableFuture<SlaveProcess> standby, String classPath) {
        List<String> trainee = slaveCommand(classPath);
        standby.whenComplete((s, e) -> aotCache.trainInBackground(trainee));
    }

    /** Spawns the next standby in the background at once (no JVM start on the critical path of a handover). */
    private java.util.concurrent.CompletableFuture<SlaveProcess> startStandby() {
        return startStandby(0);
    }

    /**
     * Spawns the next standby in the background, {@code delayMs} from now ({@code slave.standby_delay_ms} after a
     * handover: the JVM start and warm-up take CPU from the guests just when they resume), or as soon as a handover
     * takes it ({@link #takeStandby}). Returns its future (completed once it said hello, or failed).
     */
    private synchronized java.util.concurrent.CompletableFuture<SlaveProcess> startStandby(long delayMs) {
        java.util.concurrent.CompletableFuture<SlaveProcess> next = new java.util.concurrent.CompletableFuture<>();
        CountDownLatch go = new CountDownLatch(1);
        StandbyStart start = new StandbyStart();
        standby = next;
        standbyGo = go;
        standbyStart = start;
        Thread.ofPlatform().name("standby-spawn").daemon(true).start(() -> {
            try {
                if (delayMs > 0 && !go.await(delayMs, TimeUnit.MILLISECONDS)) {
                    LOG.log(System.Logger.Level.DEBUG, "standby: starting " + delayMs + " ms after the handover");
                }
                if (shuttingDown) {
                    next.completeExceptionally(new IllegalStateException("the master is shutting down"));
                    return;
                }
                SlaveProcess started = connectSlave(slaveClassPath, start::spawned);
                next.complete(started);
                LOG.log(
                        System.Logger.Level.INFO,
                        "standby slave " + started.slaveId() + " (pid " + started.pid() + ") ready");
            } catch (Exception e) {
                LOG.log(System.Logger.Level.ERROR, "cannot start a standby slave: " + e.getMessage(), e);
                next.completeExceptionally(e);
            }
        });
        return next;
    }

    /**
     * The serving slave died (issue #4): re-format each controller's queue pairs once the engine has no command of
     * them in flight (the journal holds every request the guest has not seen complete), give the standby the
     * controllers and the sessions (fds from custody), then spawn a new standby. Stops the master if no standby can
     * take over.
     */
    private void handOver(SlaveProcess dead) {
        // started by the slave-exits thread, whose SCHED_RESET_ON_FORK made it ordinary: the master's part of a crash
        // pause runs here
        io.vhostd.shm.linux.Priority.niceCurrentThread(SlaveProcess.CONTROL_NICE);
        Process exited = dead.process();
        supervisorLock.lock();
        try {
            if (dead != slave || dead.handedOver()) {
                if (exited.isAlive()) {
                    // an early notice (TASKSTATS) of a slave that serves nothing: its exit is logged when it is gone
                    return;
                }
                // left on purpose (a rolling upgrade moved its controllers and stopped it) or already replaced
                LOG.log(
                        System.Logger.Level.INFO,
                        "slave " + dead.slaveId() + " (pid " + exited.pid() + ") exited with status "
                                + exited.exitValue()
                                + (dead.handedOver()
                                        ? "; its controllers were handed over"
                                        : "; it served no controller"));
                if (!dead.retiring() && !dead.handedOver()) {
                    dead.reap();
                }
                return;
            }
            dead.markHandedOver();
            handOverLocked(dead, exited);
        } finally {
            supervisorLock.unlock();
        }
    }

    private void handOverLocked(SlaveProcess dead, Process exited) {
        long noticedNs = System.nanoTime();
        // what it sent before it died (custody changes, regions) is applied before its custody is handed on: with a
        // TASKSTATS notice the master may not have read its last messages yet
        dead.drainAfterDeath(1_000);
        java.util.concurrent.CompletableFuture<SlaveProcess> waiting;
        synchronized (this) {
            if (shuttingDown) {
                return;
            }
            waiting = takeStandbyNow();
            handingOver = true;
        }
        LOG.log(
                System.Logger.Level.WARNING,
                "slave " + dead.slaveId() + " (pid " + exited.pid() + ") "
                        + (exited.isAlive()
                                ? "is exiting (TASKSTATS: every thread in do_exit, its memory not yet freed)"
                                : "exited with status " + exited.exitValue())
                        + "; handing its controllers to the standby"
                        + (waiting == null ? " (none: starting one)" : waiting.isDone() ? "" : " (still starting)"));
        try {
            SlaveProcess next = null;
            try {
                // a standby still starting is waited for rather than a second one spawned
                next = waiting == null ? null : waiting.get(60, TimeUnit.SECONDS);
            } catch (java.util.concurrent.ExecutionException e) {
                LOG.log(System.Logger.Level.WARNING, "the standby did not start: " + e.getCause());
            }
            if (next == null || !next.process().isAlive()) {
                // no standby to take: a new slave, which the guests wait for, warms up no longer than it must
                next = connectSlave(slaveClassPath, SlaveProcess::hurry);
            }
            long resetStartNs = System.nanoTime();
            Set<String> adopt = new HashSet<>();
            for (ControllerRuntime c : List.copyOf(controllers.values())) {
                controllers.put(c.name(), resetQpairs(c));
                if (custody.get(new FdCustody.Key(c.name(), "connection", 0)) >= 0) {
                    adopt.add(c.name());
                } else {
                    // no session to continue: the next one starts on a fresh journal
                    JournalDescriptor.format(
                            journals.get(c.name()).segment(),
                            c.numQueues(),
                            QPAIR_DEPTH,
                            JournalDescriptor.ENTRY_COPY_LENGTH);
                }
            }
            long resetNs = System.nanoTime();
            sendControllers(next, adopt);
            for (String name : adopt) {
                String error = next.adopted(name).get(30, TimeUnit.SECONDS);
                if (error != null) {
                    // better a disconnect than a guest that waits forever: QEMU sees the connection close and may
                    // reconnect (chardev reconnect=); the fds of the session are released
                    LOG.log(
                            System.Logger.Level.ERROR,
                            "controller " + name + ": session not adopted, closing its connection: " + error);
                    custody.releaseAll(name, SlaveProcess.SESSION_FDS);
                }
            }
            awaitListening(next);
            slave = next;
            handingOver = false;
            writeSlaveState(next);
            long doneNs = System.nanoTime();
            LOG.log(
                    System.Logger.Level.INFO,
                    "slave " + next.slaveId() + " (pid " + next.pid() + ") resumed " + adopt.size() + " session(s) "
                            + (lastResumedNs(next, adopt, doneNs) - noticedNs) / 1_000 + " us after slave "
                            + dead.slaveId() + " died (noticed at " + noticedNs + " ns monotonic; queue pairs reset in "
                            + (resetNs - resetStartNs) / 1_000
                            + " us, handover done after " + (doneNs - noticedNs) / 1_000 + " us)");
            watch(next);
            // a death soon after the previous one looks like a crash loop: the next standby starts at once
            boolean crashLoop = lastDeathNs != 0 && noticedNs - lastDeathNs < CRASH_LOOP_NS;
            lastDeathNs = noticedNs;
            startStandby(crashLoop ? 0 : config.slave().standbyDelayMs());
            dead.reap();
        } catch (Exception e) {
            LOG.log(
                    System.Logger.Level.ERROR,
                    "handover after slave " + dead.slaveId() + " died failed; stopping the master: " + e.getMessage(),
                    e);
            custody.close();
            stopped.countDown();
        }
    }

    /**
     * When the last of the {@code adopted} sessions was back on {@code next}'s data path ({@code resumed_ns} of its
     * {@code session_adopted}, CLOCK_MONOTONIC as System.nanoTime), or {@code otherwiseNs} if none said.
     */
    private static long lastResumedNs(SlaveProcess next, Set<String> adopted, long otherwiseNs) {
        long last = 0;
        for (String name : adopted) {
            last = Math.max(last, next.adoptedAtNs(name));
        }
        return last > 0 ? last : otherwiseNs;
    }

    // --- rolling upgrade (issue #4): controllers move one at a time from the serving slave to a new one ---

    /** How long a slave may take to check, or to release, one controller (it drains its requests in flight). */
    private static final long RELEASE_TIMEOUT_MS = 10_000;

    /** How long the new slave may take to adopt one session and listen on the controller's socket. */
    private static final long TAKE_OVER_TIMEOUT_MS = 30_000;

    /**
     * One controller moved by {@link #upgrade}: the guest-visible pause, how long the old slave took to let go, the
     * requests it drained (only when too many were in flight) and those the new slave took over in flight.
     */
    private record Moved(String name, long pauseNs, long drainNs, int drainedRequests, int carriedRequests) {}

    /**
     * {@code slave_upgrade {jar?}} (issue #4, control-channel.md "Rolling upgrade"): starts a slave from {@code jar}
     * (without a jar the warm standby, which runs the current build, is used), checks its versions, and moves every
     * controller to it, one at a time; the old slave exits and a standby of the new build is started.
     *
     * @return {@code {"slave_id", "pid", "controllers": [{"name", "pause_us"}]}}
     * @throws RpcException {@code invalid_params} (jar not a file), {@code not_supported} (no slave runs), {@code
     *     slave_incompatible} (the new slave's versions differ; the old one keeps serving), {@code slave_error} (a
     *     controller cannot be handed over now, or the move failed: then the crash path took over)
     */
    private JsonNode slaveUpgrade(JsonNode params) throws RpcException {
        String jar = null;
        if (params != null && params.isObject() && params.hasNonNull("jar")) {
            JsonNode j = params.get("jar");
            if (!j.isTextual() || j.asText().isEmpty()) {
                throw new RpcException(RpcErrorCode.INVALID_PARAMS, "invalid params: jar: must be a non-empty string");
            }
            Path p = Path.of(j.asText()).toAbsolutePath();
            if (!Files.isRegularFile(p) || !Files.isReadable(p)) {
                throw new RpcException(
                        RpcErrorCode.INVALID_PARAMS, "invalid params: jar: " + p + " is not a readable file");
            }
            jar = p.toString();
        }
        if (!options.spawnSlave()) {
            throw new RpcException(RpcErrorCode.NOT_SUPPORTED, "this master runs no slave");
        }
        supervisorLock.lock();
        try {
            synchronized (controllerLock) {
                return upgrade(jar);
            }
        } finally {
            supervisorLock.unlock();
        }
    }

    private JsonNode upgrade(String jar) throws RpcException {
        SlaveProcess old = slave;
        if (shuttingDown || old == null || !old.process().isAlive() || old.exiting() || handingOver) {
            throw new RpcException(
                    RpcErrorCode.SLAVE_ERROR, "no serving slave to upgrade (a handover or shutdown is in progress)");
        }
        long startNs = System.nanoTime();
        String classPath = jar == null ? slaveClassPath : jar;
        SlaveProcess next = newSlaveFor(classPath, jar == null);
        List<ControllerRuntime> list = controllerList();
        // 1. every controller must be movable before one moves
        for (ControllerRuntime c : list) {
            String refusal;
            try {
                refusal = old.release(c.name(), true)
                        .get(RELEASE_TIMEOUT_MS, TimeUnit.MILLISECONDS)
                        .error();
            } catch (Exception e) {
                refusal = "slave " + old.slaveId() + " did not answer: " + e;
            }
            if (refusal != null) {
                next.stop("upgrade refused", 5_000);
                startStandbyIfMissing();
                throw new RpcException(
                        RpcErrorCode.SLAVE_ERROR,
                        "controller " + c.name() + " cannot be handed over now: " + refusal + "; slave " + old.slaveId()
                                + " keeps serving");
            }
        }
        // 2. what does not depend on where the old slave stops goes to the new one while the old one still serves
        Set<String> prepared = prepareControllers(next, list);
        // 3. one at a time
        old.retire();
        draining = old;
        LOG.log(
                System.Logger.Level.INFO,
                "upgrade: moving " + list.size() + " controller(s) from slave " + old.slaveId() + " (pid " + old.pid()
                        + ") to slave " + next.slaveId() + " (pid " + next.pid() + ", " + classPath + ")");
        List<Moved> moved = new ArrayList<>();
        ControllerRuntime current = null;
        try {
            for (ControllerRuntime c : list) {
                current = c;
                moved.add(moveController(old, next, c, prepared.contains(c.name())));
            }
        } catch (Exception e) {
            return upgradeFailed(old, next, current, e);
        }
        // 4. the new slave serves everything: it is the one watched; the old one leaves; a standby of the new build
        slave = next;
        draining = null;
        slaveClassPath = classPath;
        writeSlaveState(next);
        watch(next);
        old.stop("upgraded to slave " + next.slaveId(), 5_000);
        java.util.concurrent.CompletableFuture<SlaveProcess> oldStandby = takeStandby();
        if (oldStandby != null) {
            // spawned from the previous build: replaced
            oldStandby.thenAccept(s -> s.stop("replaced by a standby of the new build", 5_000));
        }
        // the new build's slaves start with an AOT cache of their own once it is made
        trainAotCacheAfter(startStandby(config.slave().standbyDelayMs()), classPath);
        ObjectNode out = JSON.createObjectNode();
        out.put("slave_id", next.slaveId());
        out.put("pid", next.pid());
        ArrayNode cs = out.putArray("controllers");
        long maxPauseNs = 0;
        for (Moved m : moved) {
            ObjectNode o = cs.addObject();
            o.put("name", m.name());
            o.put("pause_us", m.pauseNs() / 1_000);
            maxPauseNs = Math.max(maxPauseNs, m.pauseNs());
        }
        LOG.log(
                System.Logger.Level.INFO,
                "upgrade: slave " + next.slaveId() + " (pid " + next.pid() + ") serves " + moved.size()
                        + " controller(s) in place of slave " + old.slaveId() + "; longest pause "
                        + maxPauseNs / 1_000 + " us, upgrade took " + (System.nanoTime() - startNs) / 1_000_000
                        + " ms");
        return out;
    }

    /**
     * The slave an upgrade moves the controllers to: the warm standby when it runs {@code classPath} ({@code
     * useStandby}), else a new one spawned from it.
     *
     * @throws RpcException {@code slave_incompatible} if its versions differ (it was stopped), {@code slave_error} if
     *     it did not start
     */
    private SlaveProcess newSlaveFor(String classPath, boolean useStandby) throws RpcException {
        if (useStandby) {
            java.util.concurrent.CompletableFuture<SlaveProcess> waiting = takeStandby();
            if (waiting != null) {
                try {
                    SlaveProcess s = waiting.get(60, TimeUnit.SECONDS);
                    if (s.process().isAlive()) {
                        return s;
                    }
                } catch (Exception e) {
                    LOG.log(System.Logger.Level.WARNING, "upgrade: the standby is not usable: " + e);
                }
            }
        }
        try {
            return connectSlave(classPath);
        } catch (SlaveIncompatibleException e) {
            LOG.log(
                    System.Logger.Level.ERROR,
                    "upgrade: " + e.getMessage() + "; slave " + slave.slaveId() + " keeps serving");
            startStandbyIfMissing();
            throw new RpcException(
                    RpcErrorCode.SLAVE_INCOMPATIBLE, e.getMessage() + "; slave " + slave.slaveId() + " keeps serving");
        } catch (Exception e) {
            startStandbyIfMissing();
            throw new RpcException(
                    RpcErrorCode.SLAVE_ERROR,
                    "cannot start a slave from " + classPath + ": " + e.getMessage() + "; slave " + slave.slaveId()
                            + " keeps serving");
        }
    }

    /** Starts a standby if the upgrade took it and gave up (none is on its way). */
    private void startStandbyIfMissing() {
        boolean missing;
        synchronized (this) {
            missing = standby == null && !shuttingDown;
        }
        if (missing) {
            startStandby();
        }
    }

    /**
     * Moves one controller (control-channel.md "Rolling upgrade", steps 2-4): the old slave releases it (stops
     * fetching and consuming completions, reports what is still at the device), the new one adopts the session from
     * the journal and the fds in custody as after a crash, but without resetting the queue pairs: the commands in
     * them complete into the new slave, which publishes them (nothing drained, nothing written twice).
     */
    private Moved moveController(SlaveProcess old, SlaveProcess next, ControllerRuntime c, boolean prepared)
            throws Exception {
        String name = c.name();
        // prepared: the commit goes out from the thread that receives the answer, no hand-off to this one in the pause.
        // Attached before the release goes out: a quick answer would otherwise find no commit attached, and this
        // thread would run it once it got there (a master's first upgrade: 2.3 ms after the answer, docs/benchmarks.md)
        java.util.concurrent.CompletableFuture<ControlMessage.ControllerReleased> answer =
                new java.util.concurrent.CompletableFuture<>();
        java.util.concurrent.CompletableFuture<Boolean> committed =
                prepared ? answer.thenApply(r -> commitPrepared(old, next, c, r)) : null;
        old.release(name, false, answer);
        ControlMessage.ControllerReleased released = answer.get(RELEASE_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        if (released.error() != null) {
            throw new IllegalStateException(
                    "slave " + old.slaveId() + " did not release " + name + ": " + released.error());
        }
        boolean connected = prepared
                ? committed.get(RELEASE_TIMEOUT_MS, TimeUnit.MILLISECONDS)
                : custody.get(new FdCustody.Key(name, "connection", 0)) >= 0;
        if (!connected && !prepared) {
            // no session to continue: the next one starts on a fresh journal
            JournalDescriptor.format(
                    journals.get(name).segment(), c.numQueues(), QPAIR_DEPTH, JournalDescriptor.ENTRY_COPY_LENGTH);
        }
        int carried = 0;
        for (ControlMessage.CarriedQueue q : released.carried()) {
            carried += q.heads().size();
        }
        if (prepared) {
            String error = next.adopted(name).get(TAKE_OVER_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            if (error != null) {
                throw new IllegalStateException(
                        "slave " + next.slaveId() + " did not take over " + name + ": " + error);
            }
        } else if (connected && carried > 0) {
            // before the adoption: the new slave completes these instead of replaying them
            next.channel().send(new ControlMessage.CarryOver(name, released.carried()));
        }
        if (!prepared) {
            sendControllers(next, connected ? Set.of(name) : Set.of(), name::equals);
        }
        if (connected && !prepared) {
            String error = next.adopted(name).get(TAKE_OVER_TIMEOUT_MS, TimeUnit.MILLISECONDS);
            if (error != null) {
                throw new IllegalStateException(
                        "slave " + next.slaveId() + " did not adopt the session of " + name + ": " + error);
            }
        }
        next.listening(name).get(TAKE_OVER_TIMEOUT_MS, TimeUnit.MILLISECONDS);
        long resumedNs = connected || prepared ? next.adoptedAtNs(name) : System.nanoTime();
        long stoppedNs = released.stoppedFetchingNs();
        Moved m = new Moved(
                name, resumedNs - stoppedNs, released.releasedNs() - stoppedNs, released.drainedRequests(), carried);
        LOG.log(
                System.Logger.Level.INFO,
                "upgrade: controller " + name + " moved from slave " + old.slaveId() + " to slave " + next.slaveId()
                        + ": pause " + m.pauseNs() / 1_000 + " us (stopped fetching at " + stoppedNs
                        + " ns monotonic, released in " + m.drainNs() / 1_000 + " us, " + m.carriedRequests()
                        + " request(s) taken over in flight, " + m.drainedRequests() + " drained"
                        + (connected ? "" : ", no session")
                        + (prepared
                                ? ", prepared, answer read +" + (answerReadNs - stoppedNs) / 1_000 + " us, decoded +"
                                        + (answerNs - stoppedNs) / 1_000 + " us, commit sent +"
                                        + (commitSentNs - stoppedNs) / 1_000 + " us"
                                : "")
                        + ")");
        return m;
    }

    /**
     * Rolling upgrade, commit phase (control-channel.md "Rolling upgrade" step 3), on the thread that received the old
     * slave's answer {@code released}: the controller waits in {@code next}; only the session's fds and the carried
     * requests move now. Nothing is sent if the release failed.
     *
     * @return whether a front-end was connected (its session is adopted)
     */
    /** When the master received the last {@code controller_released} of a prepared move (System.nanoTime), for the log. */
    private volatile long answerNs;

    /** When the reader had the packet of that answer from the kernel, and when the commit was sent (System.nanoTime). */
    private volatile long answerReadNs, commitSentNs;

    private boolean commitPrepared(
            SlaveProcess old, SlaveProcess next, ControllerRuntime c, ControlMessage.ControllerReleased released) {
        if (released.error() != null) {
            return false;
        }
        answerNs = System.nanoTime();
        answerReadNs = old.channel().lastReceivedNs();
        boolean connected = custody.get(new FdCustody.Key(c.name(), "connection", 0)) >= 0;
        if (connected) {
            sendAdoptSession(next, c);
        } else {
            // no session to continue: the next one starts on a fresh journal
            JournalDescriptor.format(journals.get(c.name()).segment(), c.numQueues(), QPAIR_DEPTH, 0);
        }
        next.channel().send(new ControlMessage.CommitController(c.name(), connected ? released.carried() : List.of()));
        commitSentNs = System.nanoTime();
        return connected;
    }

    /**
     * Rolling upgrade, prepare phase (control-channel.md "Rolling upgrade" step 2): sends {@code next} each controller's
     * stats region, journal and {@code prepare_controller} while the old slave still serves, and waits for the answers.
     * A controller the new slave did not prepare (an error, no answer in time: e.g. a build without this step) moves
     * the one-step way, everything inside the pause.
     *
     * @return the names of the controllers {@code next} prepared
     */
    private Set<String> prepareControllers(SlaveProcess next, List<ControllerRuntime> list) {
        Set<String> prepared = new HashSet<>();
        for (ControllerRuntime c : list) {
            try {
                sendPrepare(next, c);
                String error = next.prepared(c.name()).get(RELEASE_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                if (error == null) {
                    prepared.add(c.name());
                } else {
                    LOG.log(
                            System.Logger.Level.WARNING,
                            "upgrade: slave " + next.slaveId() + " did not prepare " + c.name() + " (" + error
                                    + "); it moves inside the pause");
                }
            } catch (Exception e) {
                LOG.log(
                        System.Logger.Level.WARNING,
                        "upgrade: slave " + next.slaveId() + " did not prepare " + c.name() + " (" + e
                                + "); it moves inside the pause");
            }
        }
        return prepared;
    }

    /** {@code controller_stats}, {@code controller_journal} and {@code prepare_controller} of {@code c} to {@code target}. */
    private void sendPrepare(SlaveProcess target, ControllerRuntime c) {
        ControlChannel channel = target.channel();
        sendRegions(channel, c);
        channel.send(new ControlMessage.PrepareController(addControllerOf(c)), controllerFds(c));
    }

    /** The {@code adopt_session} of {@code c}: the session's fds from custody. */
    private void sendAdoptSession(SlaveProcess target, ControllerRuntime c) {
        Map<FdCustody.Key, Integer> entries = custody.entries(c.name());
        List<ControlMessage.AdoptedFd> refs = new ArrayList<>();
        int[] fds = new int[entries.size()];
        // loops, no stream or lambda: in a rolling upgrade this runs inside the guest's pause, once in a master's life
        for (Map.Entry<FdCustody.Key, Integer> e : entries.entrySet()) {
            if (SlaveProcess.SESSION_FDS.contains(e.getKey().what())) {
                fds[refs.size()] = e.getValue();
                refs.add(new ControlMessage.AdoptedFd(
                        e.getKey().what(), e.getKey().index()));
            }
        }
        target.channel().send(new ControlMessage.AdoptSession(c.name(), refs), Arrays.copyOf(fds, refs.size()));
    }

    /**
     * A move failed halfway: some controllers may be on the new slave, one may be released by nobody. Both slaves are
     * stopped and the crash path (the standby, the journal, the fds in custody) takes every controller over; the RPC
     * fails with what went wrong.
     */
    private JsonNode upgradeFailed(SlaveProcess old, SlaveProcess next, ControllerRuntime at, Exception e)
            throws RpcException {
        String why = e instanceof java.util.concurrent.ExecutionException
                ? e.getCause().toString()
                : e.toString();
        LOG.log(
                System.Logger.Level.ERROR,
                "upgrade: moving " + (at == null ? "?" : at.name()) + " failed (" + why + "); stopping slaves "
                        + old.slaveId() + " and " + next.slaveId() + " and handing every controller to the standby");
        next.process().destroyForcibly();
        old.process().destroyForcibly();
        try {
            next.process().waitFor(5, TimeUnit.SECONDS);
            old.process().waitFor(5, TimeUnit.SECONDS);
        } catch (InterruptedException ie) {
            Thread.currentThread().interrupt();
        }
        draining = null;
        next.reap();
        handOverLocked(old, old.process());
        throw new RpcException(
                RpcErrorCode.SLAVE_ERROR,
                "upgrade failed while moving " + (at == null ? "?" : at.name()) + ": " + why
                        + "; the controllers were handed over as after a slave crash");
    }

    /** The slave a rolling upgrade is moving controllers away from, or null (issue #5: slave_get_slaves "draining"). */
    SlaveProcess drainingSlave() {
        return draining;
    }

    /**
     * Detaches each queue pair of {@code c} from its engine (which waits for its commands in flight), re-formats it
     * and attaches it again: what the dead slave submitted is discarded, the journal replays it.
     */
    private ControllerRuntime resetQpairs(ControllerRuntime c) {
        DeviceEngine engine = bdevs.get(c.bdev().name()).orElseThrow().engine();
        // every queue's commands in flight drain together
        engine.detachAll(
                c.qpairs().stream().mapToInt(ControlMessage.QpairRef::qpairId).toArray());
        List<QpairBinding> bindings = new ArrayList<>();
        for (int q = 0; q < c.numQueues(); q++) {
            QpairBinding old = c.bindings().get(q);
            ControlMessage.QpairRef ref = c.qpairs().get(q);
            VirtNvmeQueuePair qp = VirtNvmeQueuePair.format(
                    arena.segment().asSlice(ref.arenaOffsetBytes(), ref.lengthBytes()),
                    ref.qpairId(),
                    QPAIR_DEPTH,
                    maxSegments);
            QpairBinding binding = new QpairBinding(qp, old.sqEventFd(), old.cqEventFd(), regions, old.nsid());
            engine.attach(binding);
            bindings.add(binding);
        }
        return new ControllerRuntime(
                c.name(),
                c.type(),
                c.bdev(),
                c.socketPath(),
                c.listenFd(),
                c.numQueues(),
                c.serial(),
                c.readOnly(),
                c.qpairs(),
                List.copyOf(bindings));
    }

    /**
     * The slave's heap (issue #4): small and committed lazily. A killed process is reported (pidfd, waitpid, control
     * socket EOF) only after the kernel tore its memory down: with the master's ZGC and its default initial heap (1/64
     * of RAM, committed up front) a SIGKILLed slave was reported dead 55 - 190 ms after the kill on a 24 GiB machine,
     * with a 16 MiB initial heap 9 - 20 ms, with ZGC and G1 alike (docs/benchmarks.md "Slave handover"). The heap has
     * no hard limit (no OutOfMemoryError); the slave's own data is a few MiB per controller (guest memory and queue
     * pairs are mappings, not heap). {@code slave.java_opts} come after these and win.
     */
    static final List<String> SLAVE_HEAP_OPTS = List.of("-Xms16m");

    /**
     * The slave's collector, unless {@code slave.java_opts} chooses one: Serial, not the master's ZGC (DESIGN §8 asks
     * for ZGC). The slave's data path allocates nothing per request, so no collector runs while it serves (none ran
     * in 8 s of 4k random I/O at 80 k IOPS), and its live data is a few MiB. Against G1 (sessions 4 - 7), Serial has
     * no concurrent or parallel collector threads competing with the guests' vCPUs, and a slave is ~60 MB smaller
     * resident (118 against 178 MB serving), which the kernel frees on a SIGKILL while the standby adopts. Measured
     * back to back, two runs each (scripts/bench-handover.sh, 20 upgrades + 20 kills): kill fio p50 / p99 14.4 / 19.9
     * and 13.2 / 23.5 ms against 15.8 / 28.7 and 16.4 / 28.0 ms, upgrade pause p99 8.4 and 7.8 ms against 10.5 and
     * 6.5 ms, fio IOPS 56.5 and 63.6 k against 50.8 and 61.8 k (docs/benchmarks.md, session 8). G1 had replaced ZGC in
     * session 4 (adoption p50 12.6 → 8.8 ms).
     */
    static final List<String> SLAVE_GC_OPTS = List.of("-XX:+UseSerialGC");

    /**
     * A JVM option about a class-data or AOT archive ({@code -XX:AOTCache}, {@code -XX:AOTMode}, {@code
     * -XX:SharedArchiveFile}, {@code -Xshare}, ...): the master's own are not passed on to its slaves, which get
     * theirs from {@link SlaveAotCache}.
     */
    static boolean choosesArchive(String jvmOption) {
        return jvmOption.startsWith("-XX:AOT")
                || jvmOption.startsWith("-XX:SharedArchiveFile")
                || jvmOption.startsWith("-XX:ArchiveClassesAtExit")
                || jvmOption.matches("-XX:[+-]AutoCreateSharedArchive")
                || jvmOption.startsWith("-Xshare");
    }

    /** A JVM option that chooses (or unchooses) a collector: the master's own is not passed on to its slaves. */
    static boolean choosesCollector(String jvmOption) {
        return jvmOption.matches("-XX:[+-]Use[A-Za-z0-9]*GC");
    }

    /**
     * The JVM options the master starts a slave with, ending with {@code javaOpts} ({@code slave.java_opts}); the
     * master's own collector choice is not among the options it passes on ({@link #choosesCollector}).
     */
    static List<String> slaveJvmOptions(List<String> javaOpts) {
        List<String> out = new ArrayList<>(SLAVE_HEAP_OPTS);
        boolean chosen = javaOpts.stream().anyMatch(Master::choosesCollector);
        if (!chosen) {
            out.addAll(SLAVE_GC_OPTS);
        }
        out.addAll(javaOpts);
        return out;
    }

    /**
     * A slave's command line up to its main class: the java binary, the JVM options ({@link #slaveJvmOptions} after
     * the master's own, but for its agents and collector), {@code -cp} and {@code classPath}. Also the command line of
     * the slaves' AOT cache training run ({@link SlaveAotCache}).
     */
    private List<String> slaveCommand(String classPath) {
        String java = ProcessHandle.current()
                .info()
                .command()
                .orElse(Path.of(System.getProperty("java.home"), "bin", "java").toString());
        List<String> cmd = new ArrayList<>();
        cmd.add(java);
        for (String arg : ManagementFactory.getRuntimeMXBean().getInputArguments()) {
            if (!arg.startsWith("-agentlib")
                    && !arg.startsWith("-javaagent")
                    && !choosesCollector(arg)
                    && !choosesArchive(arg)) {
                cmd.add(arg);
            }
        }
        // a master started with -jar got these from the jar's manifest, which -cp does not read; the launcher's own
        // copies are already in the input arguments and are not repeated
        for (String flag : List.of(
                "--enable-native-access=ALL-UNNAMED",
                "--add-exports=java.base/jdk.internal.misc=ALL-UNNAMED",
                "--sun-misc-unsafe-memory-access=allow")) {
            if (!cmd.contains(flag)) {
                cmd.add(flag);
            }
        }
        // the slave's heap and collector, then the configured options, which may override them
        cmd.addAll(slaveJvmOptions(config.slave().javaOpts()));
        cmd.add("-cp");
        cmd.add(classPath);
        return cmd;
    }

    private Process spawnSlave(String slaveId, String classPath) throws IOException {
        List<String> cmd = slaveCommand(classPath);
        // the AOT cache, when made already, goes before -cp
        cmd.addAll(cmd.size() - 2, aotCache.options(cmd));
        cmd.add("io.vhostd.slave.SlaveMain");
        cmd.add("--control");
        cmd.add(controlPath.toString());
        cmd.add("--slave-id");
        cmd.add(slaveId);
        cmd.add("--orphan-timeout-ms");
        cmd.add(Long.toString(config.slave().orphanTimeoutMs()));
        LOG.log(System.Logger.Level.DEBUG, "spawning slave: " + String.join(" ", cmd));
        // stdin is a pipe from the master: one byte on it hurries a standby's warm-up (SlaveProcess.hurry)
        ProcessBuilder builder = new ProcessBuilder(cmd).inheritIO().redirectInput(ProcessBuilder.Redirect.PIPE);
        // systemd's notification socket and watchdog are the master's: the slave must not speak for the service
        builder.environment().keySet().removeAll(SdNotify.ENVIRONMENT);
        // a child inherits its parent thread's nice: a slave spawned from a control thread (nice -10, e.g. the standby
        // after a takeover) would run its warm-up and JIT at -10, ahead of the guests
        int tid = io.vhostd.shm.linux.Priority.gettid();
        int nice = io.vhostd.shm.linux.Priority.niceOf(tid);
        if (nice < 0) {
            io.vhostd.shm.linux.Priority.niceCurrentThread(0);
        }
        try {
            return builder.start();
        } finally {
            if (nice < 0) {
                io.vhostd.shm.linux.Priority.niceCurrentThread(nice);
            }
        }
    }

    /** Accepts the slave's control connection and checks (SO_PEERCRED) that it comes from the process we spawned. */
    private int acceptFrom(Process process, long timeoutMs) throws InterruptedException {
        return acceptFrom(process.pid(), process::isAlive, timeoutMs);
    }

    /** {@link #acceptFrom(Process, long)} for process {@code pid}, alive while {@code alive} says so. */
    private int acceptFrom(long pid, java.util.function.BooleanSupplier alive, long timeoutMs)
            throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        while (System.nanoTime() < deadline) {
            int revents = io.vhostd.shm.linux.Poll.poll(controlListenFd, io.vhostd.shm.linux.Poll.POLLIN, 200);
            if (!alive.getAsBoolean()) {
                throw new IllegalStateException("slave pid " + pid + " exited before it connected");
            }
            if ((revents & io.vhostd.shm.linux.Poll.POLLIN) == 0) {
                continue;
            }
            int fd = Socket.accept(controlListenFd);
            if (fd < 0) {
                continue;
            }
            Socket.Ucred cred = Socket.getpeercred(fd);
            if (cred.pid() != pid) {
                LOG.log(
                        System.Logger.Level.WARNING,
                        "control socket: refused pid " + cred.pid() + " (expected slave " + pid + ")");
                Unistd.close(fd);
                continue;
            }
            return fd;
        }
        throw new IllegalStateException("slave did not connect within " + timeoutMs + " ms");
    }

    /** The Prometheus endpoint on {@code prometheus.listen}, when configured (docs/observability.md). */
    private void startMetrics() {
        PrometheusConfig prometheus = config.prometheus();
        if (!prometheus.enabled()) {
            return;
        }
        metrics = new MetricsServer(vertx, new StatsSource() {
            @Override
            public Map<String, IoCounters> bdevTotals() {
                return stats.bdevTotals();
            }

            @Override
            public List<HistogramSnapshot> histograms(String bdev) {
                return stats.histograms(bdev);
            }
        });
        metrics.start(prometheus.listenHost(), prometheus.listenPort()).await();
    }

    /** The Prometheus endpoint, or null when off. */
    public MetricsServer metrics() {
        return metrics;
    }

    private void startRpc() throws Exception {
        vertx = Vertx.vertx();
        RpcSocketConfig access = config.rpcSocketAccess();
        rpc = new RpcServer(
                vertx,
                Path.of(config.rpcSocket()),
                RpcSpec.load(),
                PosixFilePermissions.fromString(access.permissionsText()),
                access.group(),
                RpcPeerPolicy.ETC_GROUP);
        rpc.register("bdev_get_bdevs", this::bdevGetBdevs);
        rpc.register("bdev_file_create", this::bdevFileCreate);
        rpc.register("bdev_null_create", params -> bdevMemoryCreate(params, BdevConfig.TYPE_NULL));
        rpc.register("bdev_malloc_create", params -> bdevMemoryCreate(params, BdevConfig.TYPE_MALLOC));
        rpc.register("bdev_nvme_attach_controller", this::bdevNvmeAttachController);
        rpc.register("bdev_delete", this::bdevDelete);
        rpc.register("nvme_get_controllers", this::nvmeGetControllers);
        rpc.register("framework_get_hugepages", this::frameworkGetHugepages);
        rpc.register("vhost_get_controllers", this::vhostGetControllers);
        rpc.register("slave_upgrade", this::slaveUpgrade);
        rpc.register("vhost_create_blk_controller", this::vhostCreateBlkController);
        rpc.register("vhost_delete_controller", this::vhostDeleteController);
        rpc.register("slave_get_slaves", this::slaveGetSlaves);
        stats.register(rpc);
        rpc.register(HealthService.METHOD, new HealthService(bdevs, stats::bdevTotals)::rpc);
        rpc.start().await();
    }

    private JsonNode bdevGetBdevs(JsonNode params) throws RpcException {
        String name = optionalName(params);
        ArrayNode out = JSON.createArrayNode();
        for (BdevRegistry.Entry entry : bdevs.list()) {
            Bdev b = entry.bdev();
            if (name != null && !name.equals(b.name())) {
                continue;
            }
            ObjectNode o = out.addObject();
            o.put("name", b.name());
            o.put("type", b.type());
            o.put("path", b.path());
            o.put("size_bytes", b.sizeBytes());
            o.put("block_size", b.blockSizeBytes());
            o.put("num_blocks", b.numBlocks());
            o.put("read_only", b.readOnly());
            o.put("engine", entry.engine().kind());
            o.put("direct", b.direct());
            o.put("persistent", entry.persistent());
            o.put("claimed_by", bdevs.claimedBy(b.name()).orElse(null));
            o.put("nvme_controller", b.nvmeController());
        }
        if (name != null && out.isEmpty()) {
            throw new RpcException(RpcErrorCode.NO_SUCH_BDEV, "no bdev named '" + name + "'");
        }
        return out;
    }

    /** {@code bdev_file_create}: {@code filename} is the config's {@code path}; a block device becomes type block. */
    private JsonNode bdevFileCreate(JsonNode params) throws RpcException {
        ObjectNode spec = ((ObjectNode) params).deepCopy();
        String filename = spec.path("filename").asText();
        spec.remove("filename");
        spec.put("path", filename);
        spec.put("type", isBlockDevice(filename) ? BdevConfig.TYPE_BLOCK : BdevConfig.TYPE_FILE);
        return JSON.getNodeFactory().textNode(createBdevs(spec, "filename").get(0));
    }

    private JsonNode bdevMemoryCreate(JsonNode params, String type) throws RpcException {
        ObjectNode spec = ((ObjectNode) params).deepCopy();
        spec.put("type", type);
        return JSON.getNodeFactory().textNode(createBdevs(spec, null).get(0));
    }

    private JsonNode bdevNvmeAttachController(JsonNode params) throws RpcException {
        ObjectNode spec = ((ObjectNode) params).deepCopy();
        spec.put("type", BdevConfig.TYPE_NVME);
        ArrayNode out = JSON.createArrayNode();
        createBdevs(spec, null).forEach(out::add);
        return out;
    }

    /**
     * Validates {@code spec} as a config {@code bdevs:} entry and creates (and records) its bdevs.
     *
     * @param pathParam the RPC param that carries {@code path}, named in error messages instead of it
     */
    private List<String> createBdevs(ObjectNode spec, String pathParam) throws RpcException {
        BdevConfig bdev;
        try {
            bdev = VhostdConfig.parseBdev(spec);
        } catch (ConfigException e) {
            String key = e.keyPath().equals("path") && pathParam != null ? pathParam : e.keyPath();
            throw new RpcException(RpcErrorCode.INVALID_PARAMS, "invalid params: " + key + ": " + e.problem());
        }
        try {
            List<String> names = new ArrayList<>();
            for (BdevRegistry.Entry entry : bdevs.create(bdev, true)) {
                names.add(entry.bdev().name());
            }
            return names;
        } catch (BdevException e) {
            throw rpcError(e);
        }
    }

    private JsonNode bdevDelete(JsonNode params) throws RpcException {
        try {
            bdevs.delete(params.path("name").asText());
        } catch (BdevException e) {
            throw rpcError(e);
        }
        return JSON.getNodeFactory().booleanNode(true);
    }

    private JsonNode nvmeGetControllers(JsonNode params) throws RpcException {
        String name = optionalName(params);
        List<BdevRegistry.ProbedController> probed;
        try {
            probed = bdevs.probeNvme();
        } catch (IOException e) {
            throw new RpcException(RpcErrorCode.DEVICE_ERROR, "cannot probe NVMe controllers: " + e);
        }
        ArrayNode out = JSON.createArrayNode();
        for (BdevRegistry.ProbedController p : probed) {
            NvmeProbe.NvmeController c = p.controller();
            if (name != null && !name.equals(c.name()) && !name.equals(p.attachedAs())) {
                continue;
            }
            ObjectNode o = out.addObject();
            o.put("name", c.name());
            o.put("model", c.model());
            o.put("serial", c.serial());
            o.put("firmware", c.firmwareRev());
            o.put("transport", c.transport());
            o.put("traddr", c.traddr());
            o.put("attached_as", p.attachedAs());
            ArrayNode namespaces = o.putArray("namespaces");
            for (NvmeProbe.NvmeNamespace ns : c.namespaces()) {
                ObjectNode n = namespaces.addObject();
                n.put("nsid", ns.nsid());
                n.put("device", ns.devicePath());
                n.put("size_bytes", ns.sizeBytes());
                n.put("block_size", ns.blockSizeBytes());
                n.put("bdev", p.attachedAs() == null ? null : attachedBdev(p.attachedAs() + "n" + ns.nsid()));
            }
        }
        if (name != null && out.isEmpty()) {
            throw new RpcException(RpcErrorCode.NO_SUCH_DEVICE, "no NVMe controller named '" + name + "'");
        }
        return out;
    }

    /** {@code name} if it is a running bdev, else null (its namespace was deleted). */
    private String attachedBdev(String name) {
        return bdevs.get(name).isPresent() ? name : null;
    }

    private JsonNode frameworkGetHugepages(JsonNode params) {
        HugepagesConfig huge = config.hugepages();
        ObjectNode o = JSON.createObjectNode();
        o.put("requested", huge.reserve());
        o.put("reserved", reservation == null ? 0 : reservation.reserved());
        o.put("added", reservation == null ? 0 : reservation.added());
        try {
            o.put("free", options.hugepagePool().freePages(huge.node()));
        } catch (IOException e) {
            o.putNull("free");
        }
        try {
            o.put("pool_pages", options.hugepagePool().poolPages(huge.node()));
        } catch (IOException e) {
            o.putNull("pool_pages");
        }
        if (huge.node() == HugepagesConfig.ANY_NODE) {
            o.putNull("node");
        } else {
            o.put("node", huge.node());
        }
        o.put("hugepage_size_bytes", HugepagesConfig.HUGEPAGE_SIZE_BYTES);
        o.put("arena_size_bytes", arena.sizeBytes());
        o.put("arena_on_hugepages", arena.hugepages());
        o.put("fallback_reason", arenaFallbackReason());
        return o;
    }

    private static RpcException rpcError(BdevException e) {
        RpcErrorCode code =
                switch (e.reason()) {
                    case INVALID -> RpcErrorCode.INVALID_PARAMS;
                    case NO_SUCH_BDEV -> RpcErrorCode.NO_SUCH_BDEV;
                    case NAME_IN_USE -> RpcErrorCode.NAME_IN_USE;
                    case BUSY -> RpcErrorCode.BDEV_BUSY;
                    case NO_SUCH_DEVICE -> RpcErrorCode.NO_SUCH_DEVICE;
                    case DEVICE_ERROR -> RpcErrorCode.DEVICE_ERROR;
                };
        return new RpcException(code, e.getMessage());
    }

    private static boolean isBlockDevice(String path) {
        try {
            int mode = (Integer) Files.getAttribute(Path.of(path), "unix:mode");
            // S_IFMT / S_IFBLK from <sys/stat.h>
            return (mode & 0170000) == 0060000;
        } catch (IOException | RuntimeException e) {
            return false;
        }
    }

    /** The bdev registry: what runs, which controller claims what (issue #5 adds controllers at run time). */
    public BdevRegistry bdevs() {
        return bdevs;
    }

    private JsonNode vhostGetControllers(JsonNode params) throws RpcException {
        String name = optionalName(params);
        ArrayNode out = JSON.createArrayNode();
        for (ControllerRuntime c : controllerList()) {
            if (name != null && !name.equals(c.name())) {
                continue;
            }
            ObjectNode o = out.addObject();
            o.put("name", c.name());
            o.put("type", c.type());
            o.put("bdev", c.bdev().name());
            o.put("socket", c.socketPath());
            o.put("num_queues", c.numQueues());
            if (slave == null) {
                o.putNull("slave_pid");
            } else {
                o.put("slave_pid", slave.pid());
            }
            ArrayNode sessions = o.putArray("sessions");
            ControlMessage.SessionState s = slave == null ? null : slave.session(c.name());
            if (s != null && s.connected()) {
                ObjectNode so = sessions.addObject();
                so.put("connected", true);
                so.put("negotiated_features", s.negotiatedFeatures());
                ArrayNode qs = so.putArray("queues");
                for (ControlMessage.QueueState q : s.queues()) {
                    ObjectNode qo = qs.addObject();
                    qo.put("index", q.index());
                    qo.put("size", q.size());
                    qo.put("started", q.started());
                }
            }
        }
        if (name != null && out.isEmpty()) {
            throw new RpcException(RpcErrorCode.NO_SUCH_CONTROLLER, "no controller named '" + name + "'");
        }
        return out;
    }

    // --- controllers at run time (issue #5): vhost_create_blk_controller, vhost_delete_controller, the registry ---

    /** A snapshot of the controllers in creation order. */
    private List<ControllerRuntime> controllerList() {
        synchronized (controllers) {
            return List.copyOf(controllers.values());
        }
    }

    /**
     * The run directory: 0700, or 0710 (group may traverse, not list) when the RPC socket is group-accessible
     * ({@code rpc_socket_mode} 0660), with the {@code rpc_socket_group} when one is configured.
     */
    private void prepareRunDirAccess() throws IOException {
        RpcSocketConfig access = config.rpcSocketAccess();
        boolean groupAccess = access.mode() == RpcSocketConfig.MODE_0660;
        Files.setPosixFilePermissions(runDir, PosixFilePermissions.fromString(groupAccess ? "rwx--x---" : "rwx------"));
        if (groupAccess && access.group() != null) {
            try {
                java.nio.file.attribute.GroupPrincipal group = runDir.getFileSystem()
                        .getUserPrincipalLookupService()
                        .lookupPrincipalByGroupName(access.group());
                Files.getFileAttributeView(runDir, java.nio.file.attribute.PosixFileAttributeView.class)
                        .setGroup(group);
            } catch (IOException e) {
                throw new IOException(
                        "rpc_socket_group: cannot give " + runDir + " the group '" + access.group() + "': " + e, e);
            }
        }
    }

    /**
     * Recreates the controllers recorded in the registry, in creation order, after the configured ones: a name the
     * configuration took is skipped (the record stays); a record that fails validation or whose bdev is missing or
     * busy is logged and kept ({@code vhost_delete_controller} of its name removes it).
     */
    private void restoreControllers() {
        for (ObjectNode record : store.controllers()) {
            String name = record.path("name").asText("?");
            if (controllers.containsKey(name)) {
                LOG.log(
                        System.Logger.Level.WARNING,
                        "registry: controller " + name + " is configured; its record is not used");
                continue;
            }
            try {
                String bdevName = record.path("bdev").asText();
                boolean bdevReadOnly =
                        bdevs.get(bdevName).map(e -> e.bdev().readOnly()).orElse(false);
                createController(ControllerRequests.fromRecord(record, runDir.toString(), bdevReadOnly));
            } catch (BdevException | ArenaFullException | IOException | RuntimeException e) {
                LOG.log(
                        System.Logger.Level.ERROR,
                        "registry: cannot recreate controller " + name + " (record kept): " + e.getMessage());
            }
        }
    }

    private JsonNode vhostCreateBlkController(JsonNode params) throws RpcException {
        synchronized (controllerLock) {
            checkNoHandover();
            String bdevName = params.path("dev_name").asText();
            BdevRegistry.Entry entry = bdevs.get(bdevName)
                    .orElseThrow(() -> new RpcException(RpcErrorCode.NO_SUCH_BDEV, "no bdev named '" + bdevName + "'"));
            ControllerConfig c = ControllerRequests.fromParams(
                    params, runDir.toString(), entry.bdev().readOnly());
            if (controllers.containsKey(c.name())) {
                throw new RpcException(RpcErrorCode.NAME_IN_USE, "a controller named '" + c.name() + "' exists");
            }
            if (c.socket().equals(config.rpcSocket())
                    || controllerList().stream().anyMatch(o -> o.socketPath().equals(c.socket()))) {
                throw new RpcException(
                        RpcErrorCode.NAME_IN_USE, "socket " + c.socket() + " is used by another controller or the RPC");
            }
            try {
                createController(c);
            } catch (BdevException e) {
                throw rpcError(e);
            } catch (ArenaFullException e) {
                throw new RpcException(RpcErrorCode.ARENA_FULL, e.getMessage());
            } catch (IllegalStateException e) {
                // listen(): a live process answers on the socket path
                throw new RpcException(RpcErrorCode.NAME_IN_USE, "socket " + c.socket() + ": " + e.getMessage());
            } catch (IOException | RuntimeException e) {
                throw new RpcException(
                        RpcErrorCode.DEVICE_ERROR, "cannot create controller " + c.name() + ": " + e.getMessage());
            }
            SlaveProcess serving = slave;
            if (serving != null) {
                try {
                    sendControllers(serving, Set.of(), c.name()::equals);
                    serving.listening(c.name()).get(SLAVE_ANSWER_TIMEOUT_S, TimeUnit.SECONDS);
                } catch (Exception e) {
                    String why = e instanceof java.util.concurrent.TimeoutException
                            ? "did not take it within " + SLAVE_ANSWER_TIMEOUT_S + " s"
                            : "failed: " + e.getMessage();
                    removeController(c.name());
                    throw new RpcException(
                            RpcErrorCode.SLAVE_ERROR,
                            "controller " + c.name() + ": slave " + serving.slaveId() + " " + why);
                }
            }
            // recorded once it is served: a master that dies before this recreates nothing (the guest never saw it)
            store.putController(c.name(), ControllerRequests.toRecord(c));
            return JSON.getNodeFactory().booleanNode(true);
        }
    }

    private JsonNode vhostDeleteController(JsonNode params) throws RpcException {
        synchronized (controllerLock) {
            String name = params.path("ctrlr").asText();
            if (!controllers.containsKey(name)) {
                // a record the master could not recreate at start-up: deleting it removes only the record
                if (store.removeController(name)) {
                    LOG.log(System.Logger.Level.INFO, "registry: record of controller " + name + " removed");
                    return JSON.getNodeFactory().booleanNode(true);
                }
                throw new RpcException(RpcErrorCode.NO_SUCH_CONTROLLER, "no controller named '" + name + "'");
            }
            checkNoHandover();
            String slaveError = removeController(name);
            store.removeController(name);
            if (slaveError != null) {
                // the controller is gone from the master either way; the slave's problem is reported, not hidden
                throw new RpcException(
                        RpcErrorCode.SLAVE_ERROR, "controller " + name + " deleted, but the slave said: " + slaveError);
            }
            return JSON.getNodeFactory().booleanNode(true);
        }
    }

    /**
     * Refuses a create or delete while a handover moves the controllers to the standby or a rolling upgrade moves
     * them to a new slave (issue #4): the controller set must not change under them.
     */
    private void checkNoHandover() throws RpcException {
        if (handingOver) {
            throw new RpcException(
                    RpcErrorCode.SLAVE_ERROR, "the serving slave died and a standby is taking over; retry in a moment");
        }
        if (draining != null) {
            throw new RpcException(
                    RpcErrorCode.SLAVE_ERROR,
                    "a rolling upgrade (slave_upgrade) is moving the controllers; retry after it");
        }
    }

    /** How long the master waits for the slave to take or remove a controller. */
    private static final long SLAVE_ANSWER_TIMEOUT_S = 30;

    /**
     * Takes controller {@code name} down (control-channel.md "Removing a controller"): the serving slave removes it,
     * then its queue pairs are detached from the engine and their arena space freed, every fd held for it closed, its
     * journal unmapped, the bdev released and the socket file removed. The registry record is the caller's.
     *
     * @return the slave's error, or null
     */
    private String removeController(String name) {
        ControllerRuntime c = controllers.get(name);
        if (c == null) {
            return null;
        }
        String slaveError = null;
        SlaveProcess serving = slave;
        if (serving != null && serving.process().isAlive()) {
            try {
                slaveError = serving.remove(name).get(SLAVE_ANSWER_TIMEOUT_S, TimeUnit.SECONDS);
            } catch (java.util.concurrent.TimeoutException e) {
                slaveError = "no answer to remove_controller within " + SLAVE_ANSWER_TIMEOUT_S + " s";
            } catch (Exception e) {
                slaveError = "remove_controller failed: " + e.getMessage();
            }
            serving.forget(name);
        }
        controllers.remove(name);
        bdevs.get(c.bdev().name()).ifPresent(entry -> {
            for (ControlMessage.QpairRef ref : c.qpairs()) {
                // waits for the commands in flight; the slave submits no more (its agent stopped)
                entry.engine().detach(ref.qpairId());
            }
        });
        c.qpairs().forEach(ref -> freeQpair(ref.arenaOffsetBytes()));
        custody.entries(name).keySet().forEach(custody::release);
        HugepageArena journal = journals.remove(name);
        if (journal != null) {
            journal.close();
        }
        stats.removeController(name);
        bdevs.release(c.bdev().name(), name);
        if (!options.listenFds().containsKey(name)) {
            try {
                Files.deleteIfExists(Path.of(c.socketPath()));
            } catch (IOException e) {
                LOG.log(System.Logger.Level.WARNING, "cannot remove " + c.socketPath() + ": " + e.getMessage());
            }
        }
        LOG.log(
                System.Logger.Level.INFO,
                "controller " + name + " deleted" + (slaveError == null ? "" : " (slave: " + slaveError + ")"));
        return slaveError;
    }

    // --- slave_get_slaves (issue #5) ---

    /** A slave's role as {@code slave_get_slaves} reports it. */
    public static final String ROLE_SERVING = "serving";

    /** A started slave that serves nothing and takes over when the serving one dies. */
    public static final String ROLE_STANDBY = "standby";

    /** A slave handing its controllers to a new one (slave_upgrade, issue #4). */
    public static final String ROLE_DRAINING = "draining";

    /**
     * One slave and its role.
     *
     * @param slave the process
     * @param role {@link #ROLE_SERVING}, {@link #ROLE_STANDBY} or {@link #ROLE_DRAINING}
     * @param controllers the controllers it serves
     */
    public record SlaveRole(SlaveProcess slave, String role, List<String> controllers) {}

    /**
     * The slaves the master runs, serving first, then the standby once it said hello. A rolling upgrade adds its
     * draining slave here.
     */
    public List<SlaveRole> slaveRoles() {
        List<SlaveRole> roles = new ArrayList<>();
        SlaveProcess serving = slave;
        SlaveProcess old = draining;
        if (serving != null) {
            // during slave_upgrade the serving slave is the one being drained until the last controller moved
            roles.add(new SlaveRole(
                    serving,
                    serving == old ? ROLE_DRAINING : ROLE_SERVING,
                    controllerList().stream().map(ControllerRuntime::name).toList()));
        }
        java.util.concurrent.CompletableFuture<SlaveProcess> waiting;
        synchronized (this) {
            waiting = standby;
        }
        if (waiting != null && waiting.isDone() && !waiting.isCompletedExceptionally()) {
            roles.add(new SlaveRole(waiting.join(), ROLE_STANDBY, List.of()));
        }
        return roles;
    }

    private JsonNode slaveGetSlaves(JsonNode params) {
        ObjectNode out = JSON.createObjectNode();
        ArrayNode list = out.putArray("slaves");
        for (SlaveRole r : slaveRoles()) {
            ObjectNode o = list.addObject();
            o.put("slave_id", r.slave().slaveId());
            o.put("pid", r.slave().pid());
            o.put("role", r.role());
            ProcessHandle.Info info = r.slave().process().info();
            o.put("build", buildOf(info));
            o.put(
                    "started_unix_ms",
                    info.startInstant().map(java.time.Instant::toEpochMilli).orElse(0L));
            ArrayNode names = o.putArray("controllers");
            r.controllers().forEach(names::add);
        }
        return out;
    }

    /** What a slave runs: the class path (a jar) after {@code -cp}, else after {@code -jar}, else its command. */
    static String buildOf(ProcessHandle.Info info) {
        String[] args = info.arguments().orElse(new String[0]);
        for (int i = 0; i + 1 < args.length; i++) {
            if (args[i].equals("-cp") || args[i].equals("-classpath") || args[i].equals("-jar")) {
                return args[i + 1];
            }
        }
        return info.command().orElse("?");
    }

    private static String optionalName(JsonNode params) throws RpcException {
        if (params == null || params.isNull() || params.isMissingNode()) {
            return null;
        }
        if (!params.isObject()) {
            throw new RpcException(RpcErrorCode.INVALID_PARAMS, "params must be an object");
        }
        JsonNode name = params.get("name");
        if (name == null || name.isNull()) {
            return null;
        }
        if (!name.isTextual()) {
            throw new RpcException(RpcErrorCode.INVALID_PARAMS, "name must be a string");
        }
        return name.asText();
    }

    // --- health, for systemd's watchdog (SystemdService) ---

    /**
     * What keeps this master from serving, or null while it is healthy: the slave it spawned has exited, or a device
     * engine's thread is gone (an engine that dies logs "engine X died" and stops serving its queue pairs). Cheap (no
     * safepoint, unlike a thread dump); called once per watchdog period.
     */
    public String healthProblem() {
        if (shuttingDown) {
            return null;
        }
        // a dead slave is fine while the standby takes over (issue #4)
        if (options.spawnSlave()
                && !handingOver
                && (slave == null || !slave.process().isAlive())) {
            return slave == null ? "no slave" : "slave pid " + slave.pid() + " exited";
        }
        if (bdevs == null) {
            return null;
        }
        // the bdevs first, then the threads: an engine created in between is not missed
        List<BdevRegistry.Entry> entries = bdevs.list();
        Set<String> live = liveThreadNames();
        for (BdevRegistry.Entry entry : entries) {
            // TODO(#5): ask the engine (DeviceEngine.alive()) instead of looking for its thread by name
            String name = entry.bdev().name();
            String thread = "engine-" + name;
            // a bdev deleted over RPC in between has no engine any more, and that is fine
            if (!live.contains(thread) && bdevs.get(name).map(e -> e == entry).orElse(false)) {
                return "engine of bdev " + name + " is not running (no thread " + thread + ")";
            }
        }
        return null;
    }

    /** Names of this JVM's live platform threads (ThreadGroup enumeration: unlike getAllStackTraces, no safepoint). */
    private static Set<String> liveThreadNames() {
        ThreadGroup root = Thread.currentThread().getThreadGroup();
        while (root.getParent() != null) {
            root = root.getParent();
        }
        Thread[] threads = new Thread[root.activeCount() + 16];
        int n;
        while ((n = root.enumerate(threads, true)) == threads.length) {
            threads = new Thread[threads.length * 2];
        }
        Set<String> names = new HashSet<>();
        for (int i = 0; i < n; i++) {
            if (threads[i].isAlive()) {
                names.add(threads[i].getName());
            }
        }
        return names;
    }

    /** Blocks until {@link #shutdown} ran or the slave died. */
    public void awaitStop() throws InterruptedException {
        stopped.await();
    }

    /** Stops the slave (it closes its sessions), then the RPC server, engines, sockets and the arena. Idempotent. */
    public synchronized void shutdown(String reason) {
        if (shuttingDown) {
            return;
        }
        shuttingDown = true;
        LOG.log(System.Logger.Level.INFO, "shutting down: " + reason);
        aotCache.close();
        if (exitWatch != null) {
            exitWatch.close();
        }
        if (slave != null) {
            slave.stop(reason, 5_000);
        }
        java.util.concurrent.CompletableFuture<SlaveProcess> waiting = takeStandby();
        if (waiting != null) {
            try {
                waiting.get(10, TimeUnit.SECONDS).stop(reason, 5_000);
            } catch (Exception e) {
                LOG.log(System.Logger.Level.DEBUG, "standby: " + e);
            }
        }
        if (metrics != null) {
            metrics.close();
        }
        if (rpc != null) {
            try {
                rpc.stop().await();
            } catch (Exception e) {
                LOG.log(System.Logger.Level.WARNING, "rpc stop: " + e.getMessage());
            }
        }
        if (vertx != null) {
            try {
                vertx.close().await();
            } catch (Exception e) {
                LOG.log(System.Logger.Level.DEBUG, "vertx close: " + e.getMessage());
            }
        }
        if (bdevs != null) {
            // stops every engine, then closes the bdevs; the registry file keeps its records
            bdevs.close();
        }
        regions.close();
        for (ControllerRuntime c : controllers.values()) {
            if (options.listenFds().containsKey(c.name())) {
                // an inherited socket's path belongs to whoever bound it (vhost-user.rst --fd)
                continue;
            }
            try {
                Files.deleteIfExists(Path.of(c.socketPath()));
            } catch (IOException e) {
                LOG.log(System.Logger.Level.WARNING, "cannot remove " + c.socketPath() + ": " + e.getMessage());
            }
        }
        custody.close();
        try {
            // a clean stop: nothing for a next master to re-adopt
            Files.deleteIfExists(slaveStateFile());
        } catch (IOException e) {
            LOG.log(System.Logger.Level.WARNING, "cannot remove " + slaveStateFile() + ": " + e.getMessage());
        }
        if (controlListenFd >= 0) {
            Unistd.close(controlListenFd);
            try {
                Files.deleteIfExists(controlPath);
            } catch (IOException ignored) {
                // best effort: the run directory is ours
            }
        }
        if (store != null) {
            store.close();
        }
        journals.values().forEach(HugepageArena::close);
        if (stats != null) {
            stats.close();
        }
        if (arena != null) {
            arena.close();
        }
        if (reservation != null) {
            // the arena's pages are free again: give back what the reservation added to the pool
            options.hugepagePool().release(reservation);
        }
        stopped.countDown();
    }

    @Override
    public void close() {
        shutdown("closed");
    }

    private static long align(long v, long a) {
        return (v + a - 1) & -a;
    }
}
