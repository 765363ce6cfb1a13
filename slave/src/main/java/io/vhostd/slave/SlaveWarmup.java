package io.vhostd.slave;

import io.vhostd.journal.JournalDescriptor;
import io.vhostd.journal.JournalMemoryRegion;
import io.vhostd.journal.JournalRecovery;
import io.vhostd.journal.SessionJournal;
import io.vhostd.journal.StoreObserver;
import io.vhostd.journal.VringConfig;
import io.vhostd.journal.inflight.InflightRegionDescriptor;
import io.vhostd.journal.inflight.InflightRegionSplit;
import io.vhostd.shm.control.ControlChannel;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.control.HandoverWarmup;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Memfd;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.stats.StatsDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import io.vhostd.shm.virtnvme.VirtNvmeQueuePair;
import io.vhostd.vhost.backend.VhostUserBackend;
import io.vhostd.vhost.proto.VhostUserFeature;
import io.vhostd.vhost.virtio.VirtioBlk;
import java.io.File;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.jar.JarEntry;
import java.util.jar.JarFile;
import java.util.stream.Stream;

/**
 * Warms a fresh slave JVM before it says hello (DESIGN §8, issue #4): a standby or upgraded slave takes a session over
 * on the guest's critical path, and in a cold JVM that path pays for class loading and verification, the control
 * channel's JSON (de)serializers and the interpreter, hundreds of milliseconds on a busy machine. So, once, before
 * the master counts the slave as ready: every class of the slave's own packages is loaded and initialised, each
 * control message of the handover path makes a round trip through a socketpair, the journal's writer and recovery
 * run over a scratch region, and two scratch sessions (with and without a vhost-user inflight region) are adopted,
 * serve scratch requests and are released as in a handover. Nothing here touches the master, a guest or a device. A
 * slave the master hurries (a handover waits for it: {@link #hurriedOnStdin}) stops warming up where it is.
 */
final class SlaveWarmup {
    private static final System.Logger LOG = System.getLogger(SlaveWarmup.class.getName());

    /** Packages whose classes are loaded ahead (resource paths). */
    private static final List<String> PACKAGES =
            List.of("io/vhostd/slave/", "io/vhostd/journal/", "io/vhostd/vhost/", "io/vhostd/shm/");

    /**
     * Scratch requests the handover rehearsal runs through the data path (system property {@code
     * vhostd.warmup.requests}): enough for C2 to compile the path (its thresholds: 5000 invocations, 15000 with loop
     * back-edges). Without them the first ~100 ms after an adoption ran interpreted while ~130 methods compiled.
     */
    static final int DATA_PATH_REQUESTS = Integer.getInteger("vhostd.warmup.requests", 40_000);

    /** The scratch requests may take this long (wall time) at most. */
    private static final long DATA_PATH_BUDGET_NS = 3_000_000_000L;

    /** Journal fetch + completion iterations: enough for the JIT's first tier to compile the writer's methods. */
    private static final int JOURNAL_ROUNDS = 20_000;

    private SlaveWarmup() {}

    private static volatile boolean stdinHurried;

    /**
     * Whether the master wants this slave now (issue #4): a handover took the standby while it still warmed up, and
     * wrote a byte to the slave's stdin, a pipe from the master ({@code SlaveProcess.hurry}). The warm-up then stops
     * where it is and the slave says hello: one whose data path is not compiled yet serves after tens of milliseconds,
     * one that finishes warming up after seconds on a loaded host. Stays true once true (the byte is never read). A
     * slave started by hand (stdin a terminal or /dev/null) is hurried by input on stdin, or never.
     */
    static boolean hurriedOnStdin() {
        if (!stdinHurried) {
            try {
                stdinHurried = System.in.available() > 0;
            } catch (IOException e) {
                // stdin closed: nobody to hurry us
            }
        }
        return stdinHurried;
    }

    private static volatile boolean atWork;

    /**
     * The master gave this slave work (a controller, a journal, a session): the background codec warm-up stops. It
     * allocates, and a collection it causes stops every thread of the slave, the data path's too (G1 young pauses of
     * 5 - 9 ms in the bench, one inside a handover's pause). A warm-up that ends unstopped runs a young collection
     * ({@link YoungCollection}) so that a handover finds the young generation empty.
     */
    static void atWork() {
        atWork = true;
    }

    /**
     * Runs the warm-up; never fails (a step that fails is logged and skipped). Returns a one-line summary.
     *
     * @param hurried asked between steps and within each: once true, the warm-up ends as soon as it can
     */
    static String run(java.util.function.BooleanSupplier hurried) {
        long startNs = System.nanoTime();
        int classes = 0;
        try {
            classes = preloadClasses(hurried);
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.DEBUG, "warm-up: class preloading: " + e);
        }
        long classesNs = System.nanoTime();
        int trips = 0;
        try {
            trips = roundTripMessages(hurried);
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.DEBUG, "warm-up: control messages: " + e);
        }
        long messagesNs = System.nanoTime();
        try {
            if (!hurried.getAsBoolean()) {
                exerciseJournal();
            }
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.DEBUG, "warm-up: journal: " + e);
        }
        long journalNs = System.nanoTime();
        int requests = 0;
        int failed = 0;
        // a QEMU session records every request in its inflight region, a libblkio one has none: compiled for one
        // only, the data path deoptimized at the other's first requests (restores of 1.5 - 5 ms instead of ~1)
        for (boolean inflightRegion : new boolean[] {true, false}) {
            try {
                if (!hurried.getAsBoolean()) {
                    Rehearsal rehearsal =
                            rehearseHandover(DATA_PATH_REQUESTS, DATA_PATH_BUDGET_NS, hurried, inflightRegion);
                    requests += rehearsal.requests();
                    failed += rehearsal.failed();
                }
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "warm-up: handover rehearsal failed: " + e, e);
            }
        }
        long rehearsedNs = System.nanoTime();
        // the young generation empty for the first handover (YoungCollection)
        boolean collected = !hurried.getAsBoolean() && YoungCollection.now();
        long endNs = System.nanoTime();
        return (hurried.getAsBoolean() ? "hurried " : "") + "warm-up: " + classes + " classes in "
                + (classesNs - startNs) / 1_000_000 + " ms, control messages ("
                + trips + " round trips) in " + (messagesNs - classesNs) / 1_000_000 + " ms, journal in "
                + (journalNs - messagesNs) / 1_000_000
                + " ms, handover rehearsals (" + requests + " requests through the data path, " + failed
                + " failed) in "
                + (rehearsedNs - journalNs) / 1_000_000 + " ms, young collection " + (collected ? "in " : "skipped, ")
                + (endNs - rehearsedNs) / 1_000_000 + " ms";
    }

    private static int preloadClasses(java.util.function.BooleanSupplier hurried) {
        ClassLoader loader = SlaveWarmup.class.getClassLoader();
        int loaded = 0;
        for (String entry : System.getProperty("java.class.path", "").split(File.pathSeparator)) {
            if (entry.isEmpty()) {
                continue;
            }
            for (String resource : classResources(Path.of(entry))) {
                if (PACKAGES.stream().noneMatch(resource::startsWith) || resource.endsWith("module-info.class")) {
                    continue;
                }
                if (hurried.getAsBoolean()) {
                    // the rest loads as the handover uses it
                    return loaded;
                }
                String name = resource.substring(0, resource.length() - ".class".length())
                        .replace('/', '.');
                try {
                    Class.forName(name, true, loader);
                    loaded++;
                } catch (Throwable t) {
                    // a class that cannot initialise here (e.g. a device type this host lacks) is loaded when used
                    LOG.log(System.Logger.Level.TRACE, "warm-up: " + name + ": " + t);
                }
            }
        }
        return loaded;
    }

    /** Class files under {@code entry} (a jar or a classes directory), as resource paths. */
    private static List<String> classResources(Path entry) {
        List<String> out = new ArrayList<>();
        try {
            if (Files.isDirectory(entry)) {
                try (Stream<Path> files = Files.walk(entry)) {
                    files.filter(p -> p.toString().endsWith(".class"))
                            .forEach(p -> out.add(entry.relativize(p).toString().replace(File.separatorChar, '/')));
                }
            } else if (Files.isRegularFile(entry)) {
                try (JarFile jar = new JarFile(entry.toFile())) {
                    for (JarEntry e : java.util.Collections.list(jar.entries())) {
                        if (e.getName().endsWith(".class")) {
                            out.add(e.getName());
                        }
                    }
                }
            }
        } catch (IOException e) {
            LOG.log(System.Logger.Level.DEBUG, "warm-up: cannot list " + entry + ": " + e);
        }
        return out;
    }

    /**
     * The standby says hello only after its warm-up: the codec's first part may take this long (wall time; at nice 19
     * on a busy machine it gets little CPU). The rest goes on in the background ({@link #BACKGROUND_CODEC_BUDGET_NS}).
     */
    private static final long CODEC_BUDGET_NS = 1_000_000_000L;

    /** How long the background codec warm-up may go on (wall time, at the warm-up's nice). */
    private static final long BACKGROUND_CODEC_BUDGET_NS = 120_000_000_000L;

    /**
     * The control messages of a handover through the channel's codec until the JIT compiled it: up to {@link
     * #CODEC_BUDGET_NS} here (none when hurried), then all rounds again on a background thread at nice 19, until the
     * master gives the slave work ({@link #atWork}). Returns the round trips made here.
     */
    private static int roundTripMessages(java.util.function.BooleanSupplier hurried) {
        // hurried: not one round here (the first, cold, took 200 - 400 ms beside a TCG guest); all in the background
        int trips = hurried.getAsBoolean() ? 0 : HandoverWarmup.run(CODEC_BUDGET_NS, hurried);
        if (!HandoverWarmup.complete(trips)) {
            // its garbage is collected before a handover can need the slave (if the master did not give work meanwhile)
            HandoverWarmup.startInBackground(BACKGROUND_CODEC_BUDGET_NS, () -> atWork, YoungCollection::now);
        }
        return trips;
    }

    /**
     * Takes a scratch session over exactly as a handover does, then releases it as an upgrade does (issue #4): a
     * journal that holds a negotiated session with started split queues over a scratch guest memory memfd, the fds
     * such a session has (connection, memory, kick, call, and the vhost-user inflight region when {@code
     * inflightRegion}, as QEMU's; libblkio's session has none), a controller over scratch queue pairs and a control
     * link whose peer only listens. Every class, lambda and string concatenation of {@link SlaveController#adopt} and
     * {@link SlaveController#release} is linked here rather than on a guest's critical path. Queue 0 holds {@link
     * #CARRIED} virtio-blk requests in flight, taken over as a rolling upgrade's carried requests (their commands never
     * complete: nothing executes VirtNvme commands here) and handed over again by the release. The released back-end
     * keeps a few fds of the scratch session open.
     *
     * <p>Between the adoption and the release, queue 1 runs {@code requests} scratch requests through the slave's
     * data path ({@link ScratchTraffic}), until {@code budgetNs} (wall time) passed at the latest, or fewer once {@code
     * stop} says so.
     *
     * @return the requests the release handed over in flight ({@link #CARRIED} when every step worked) and the
     *     scratch requests completed
     */
    static Rehearsal rehearseHandover(
            int requests, long budgetNs, java.util.function.BooleanSupplier stop, boolean inflightRegion) {
        long deadlineNs = System.nanoTime() + budgetNs;
        int numQueues = 2;
        int queueSize = 128;
        int maxSegments = 8;
        long guestBytes = 1L << 20;
        int regionId = 1;
        // a second region of the same memfd, high in the guest's address space, holds the scratch data buffers
        int dataRegionId = 2;
        // what a front-end negotiates (QEMU, libblkio): every feature offered but the packed ring
        long features = (BlkDevice.FEATURES & ~VirtioBlk.VIRTIO_F_RING_PACKED_MASK)
                | VhostUserFeature.VHOST_USER_F_PROTOCOL_FEATURES_MASK;
        List<Integer> open = new ArrayList<>();
        try (Arena arena = Arena.ofShared()) {
            int[] link = Socket.socketpair(Socket.SOCK_SEQPACKET);
            open.add(link[1]);
            MasterLink master = new MasterLink(new ControlChannel(link[0]));
            // the queue pairs, formatted as the master does
            long qpairBytes = VirtNvmeDescriptor.lengthBytes(queueSize, maxSegments);
            MemorySegment qpairArena = arena.allocate(qpairBytes * numQueues, 4096);
            List<ControlMessage.QpairRef> refs = new ArrayList<>();
            List<VirtNvmeQueuePair> executors = new ArrayList<>();
            int[] controllerFds = new int[1 + 2 * numQueues];
            controllerFds[0] = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
            for (int q = 0; q < numQueues; q++) {
                executors.add(VirtNvmeQueuePair.format(
                        qpairArena.asSlice(qpairBytes * q, qpairBytes), q, queueSize, maxSegments));
                refs.add(new ControlMessage.QpairRef(q, qpairBytes * q, qpairBytes));
                controllerFds[1 + 2 * q] = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
                controllerFds[2 + 2 * q] = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
            }
            // the journal of a negotiated session: one memory region, split rings inside it, started at 0
            MemorySegment journal = arena.allocate(JournalDescriptor.lengthBytes(numQueues, queueSize, 0), 64);
            JournalDescriptor.format(journal, numQueues, queueSize, 0);
            SessionJournal writer =
                    SessionJournal.open(journal, JournalRecovery.recover(journal, (q, v, committed, p) -> committed));
            writer.recordFeatures(features);
            writer.recordProtocolFeatures(BlkDevice.PROTOCOL_FEATURES & VhostUserBackend.SUPPORTED_PROTOCOL_FEATURES);
            writer.recordMemoryTable(List.of(
                    new JournalMemoryRegion(0, guestBytes / 2, 0x7f00_0000_0000L, 0, regionId),
                    new JournalMemoryRegion(
                            TRAFFIC_DATA_GPA, guestBytes / 2, 0x7f00_1000_0000L, guestBytes / 2, dataRegionId)));
            for (int q = 0; q < numQueues; q++) {
                long ring = 0x1000L * (1 + 3 * q);
                writer.recordVring(
                        q,
                        new VringConfig(queueSize, false, ring, ring + 0x1000, ring + 0x2000, 0, 0, queueSize, false));
                writer.recordVringEnabled(q, true);
                writer.recordQueueStarted(q, 0, 0);
            }
            int memfd = scratchMemfd("vhostd-warm-up", guestBytes, open);
            MemorySegment guest = mapShared(memfd, guestBytes, arena);
            int[] connection = Socket.socketpair(Socket.SOCK_STREAM);
            open.add(connection[1]);
            List<ControlMessage.AdoptedFd> adopted = new ArrayList<>();
            List<Integer> adoptFds = new ArrayList<>();
            adopted.add(new ControlMessage.AdoptedFd("connection", 0));
            adoptFds.add(connection[0]);
            adopted.add(new ControlMessage.AdoptedFd("mem", regionId));
            adoptFds.add(Unistd.dup(memfd));
            adopted.add(new ControlMessage.AdoptedFd("mem", dataRegionId));
            adoptFds.add(Unistd.dup(memfd));
            // the vhost-user inflight region of a QEMU session (INFLIGHT_SHMFD) as the previous slave left it: started,
            // the requests it left fetched marked in flight; the data path then records every request in it too
            InflightRegionSplit[] inflight = new InflightRegionSplit[numQueues];
            if (inflightRegion) {
                long inflightQueueBytes = InflightRegionDescriptor.queueRegionLengthBytes(queueSize, false);
                int inflightFd = scratchMemfd("vhostd-warm-up-inflight", inflightQueueBytes * numQueues, open);
                MemorySegment inflightBuffer = mapShared(inflightFd, inflightQueueBytes * numQueues, arena);
                for (int q = 0; q < numQueues; q++) {
                    inflight[q] = new InflightRegionSplit(
                            InflightRegionDescriptor.queueRegion(inflightBuffer, q, queueSize, false),
                            q,
                            queueSize,
                            StoreObserver.NONE);
                    inflight[q].start(0);
                }
                adopted.add(new ControlMessage.AdoptedFd("inflight", 0));
                adoptFds.add(Unistd.dup(inflightFd));
            }
            int[] kick = new int[numQueues];
            int[] call = new int[numQueues];
            for (int q = 0; q < numQueues; q++) {
                // the front-end's ends: this thread plays the driver of queue 1
                kick[q] = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
                call[q] = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC | Eventfd.EFD_NONBLOCK);
                open.add(kick[q]);
                open.add(call[q]);
                adopted.add(new ControlMessage.AdoptedFd("kick", q));
                adoptFds.add(Unistd.dup(kick[q]));
                adopted.add(new ControlMessage.AdoptedFd("call", q));
                adoptFds.add(Unistd.dup(call[q]));
            }
            ScratchTraffic[] drivers = new ScratchTraffic[numQueues];
            for (int q = 0; q < numQueues; q++) {
                long ring = 0x1000L * (1 + 3 * q);
                drivers[q] = new ScratchTraffic(
                        guest,
                        queueSize,
                        ring,
                        ring + 0x1000,
                        ring + 0x2000,
                        q == 0 ? CARRIED_HEADERS_GPA : TRAFFIC_HEADERS_GPA,
                        q == 0 ? CARRIED_DATA_GPA : TRAFFIC_DATA_GPA,
                        q == 0 ? CARRIED : TRAFFIC_DEPTH,
                        kick[q],
                        call[q],
                        executors.get(q),
                        controllerFds[1 + 2 * q],
                        controllerFds[2 + 2 * q]);
            }
            // queue 0: requests whose commands the "old slave" submitted, carried over (never served here); queue 1:
            // requests a dead slave left fetched, which the adoption resubmits (the kill path's replay)
            drivers[0].prefetch(CARRIED, writer, 0, inflight[0]);
            List<ControlMessage.CarriedQueue> carried = List.of(carried(CARRIED));
            ScratchTraffic traffic = drivers[1];
            traffic.prefetch(PREFETCHED, writer, 1, inflight[1]);
            ControlMessage.AddController spec = new ControlMessage.AddController(
                    "warm-up", "warm-up", 1, 1L << 30, 512, false, "WARM-UP", numQueues, maxSegments, refs);
            SlaveController c = new SlaveController(spec, controllerFds, qpairArena, master, journal);
            // counted as a served controller's data path is (SlaveMain hands it the master's stats region)
            MemorySegment stats = arena.allocate(StatsDescriptor.lengthBytes(numQueues, STATS_TRACE_CAPACITY), 64);
            StatsDescriptor.format(stats, numQueues, STATS_TRACE_CAPACITY);
            c.agent().stats(stats);
            // as a rolling upgrade's prepared controller: data-path thread first, queue pairs attached at the commit
            c.prepare();
            c.commitQueuePairs();
            c.adopt(
                    new ControlMessage.AdoptSession("warm-up", adopted),
                    adoptFds.stream().mapToInt(Integer::intValue).toArray(),
                    carried);
            // the data path's command queue carries work while requests flow, as in a served session
            int completed = traffic.run(requests, deadlineNs, c.agent()::barrier, stop);
            String refusal = c.releaseRefusal();
            if (refusal != null) {
                LOG.log(System.Logger.Level.DEBUG, "warm-up: the scratch session is not releasable: " + refusal);
            }
            SlaveController.Released released = c.release();
            c.closeReleased();
            int handedOver = 0;
            for (ControlMessage.CarriedQueue cq : released.carried()) {
                handedOver += cq.heads().size();
            }
            return new Rehearsal(handedOver, completed, traffic.failed());
        } finally {
            open.forEach(Unistd::close);
        }
    }

    /** A memfd of {@code bytes} (zeros), added to {@code open} to be closed with the rehearsal's other fds. */
    private static int scratchMemfd(String name, long bytes, List<Integer> open) {
        int fd = Memfd.memfd_create(name, Memfd.MFD_CLOEXEC);
        open.add(fd);
        Unistd.ftruncate(fd, bytes);
        return fd;
    }

    /** {@code bytes} of {@code fd} mapped read-write and shared, unmapped when {@code arena} closes. */
    private static MemorySegment mapShared(int fd, long bytes, Arena arena) {
        return io.vhostd.shm.linux.Mman.mmap(
                bytes,
                io.vhostd.shm.linux.Mman.PROT_READ | io.vhostd.shm.linux.Mman.PROT_WRITE,
                io.vhostd.shm.linux.Mman.MAP_SHARED,
                fd,
                0,
                arena);
    }

    /** Requests of the rehearsal's queue 0 in flight at the device, taken over by the adoption. */
    static final int CARRIED = 3;

    /** Where queue 0's carried requests have their headers and data (guest physical, the first region). */
    private static final long CARRIED_HEADERS_GPA = 0x10000;

    private static final long CARRIED_DATA_GPA = 0x20000;

    /** Scratch requests the rehearsal keeps in flight on queue 1: a full fetch batch of the data path. */
    private static final int TRAFFIC_DEPTH = 32;

    /** Queue 1's requests the adoption resubmits (left fetched in the journal, as by a slave that died). */
    private static final int PREFETCHED = 8;

    /** Where queue 1's scratch requests have their headers (guest physical; queue 0's are below 0x23000). */
    private static final long TRAFFIC_HEADERS_GPA = 0x40000;

    /** The rehearsal's second memory region, which holds queue 1's data buffers (4 GiB, as above a PC's hole). */
    private static final long TRAFFIC_DATA_GPA = 1L << 32;

    /** Trace ring entries of the rehearsal's stats region. */
    private static final int STATS_TRACE_CAPACITY = 64;

    /**
     * What {@link #rehearseHandover} did.
     *
     * @param handedOver requests the release handed over in flight
     * @param requests scratch requests that went through the data path
     * @param failed scratch requests whose virtio-blk status was not VIRTIO_BLK_S_OK
     */
    record Rehearsal(int handedOver, int requests, int failed) {}

    /**
     * The rehearsal's queue-0 requests as a rolling upgrade's carried requests: {@code n} requests fetched by {@link
     * ScratchTraffic#prefetch} (heads 0, 3, 6, ...), one VirtNvme command each, CID = request number.
     */
    private static ControlMessage.CarriedQueue carried(int n) {
        List<Integer> heads = new ArrayList<>();
        List<Integer> states = new ArrayList<>();
        List<Integer> cids = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            heads.add(3 * i);
            states.add(0);
            cids.add(i);
        }
        return new ControlMessage.CarriedQueue(0, heads, states, cids, heads);
    }

    /** The journal's writer (fetch, two-phase completion, configuration) and recovery over a scratch region. */
    private static void exerciseJournal() {
        int slots = 256;
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment region = arena.allocate(JournalDescriptor.lengthBytes(1, slots, 0), 64);
            JournalDescriptor.format(region, 1, slots, 0);
            SessionJournal journal = SessionJournal.open(
                    region, JournalRecovery.recover(region, (q, v, committed, pending) -> committed));
            journal.recordFeatures(1L << 32);
            journal.recordVring(0, new VringConfig(slots, false, 0, 4096, 8192, 0, 0, slots, false));
            journal.recordQueueStarted(0, 0, 0);
            int[] batch = new int[1];
            for (int i = 0; i < JOURNAL_ROUNDS; i++) {
                int slot = i % slots;
                journal.requestFetched(0, slot, (i + 1) & 0xFFFF);
                batch[0] = slot;
                journal.completionsBegin(0, batch, 1, (i + 1) & 0xFFFF);
                journal.completionsEnd(0);
            }
            JournalRecovery.recover(region, (q, v, committed, pending) -> committed);
        }
    }
}
