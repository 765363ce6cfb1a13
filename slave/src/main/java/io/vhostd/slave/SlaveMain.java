package io.vhostd.slave;

import io.vhostd.journal.JournalDescriptor;
import io.vhostd.shm.arena.HugepageArena;
import io.vhostd.shm.control.ControlChannel;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.virtnvme.VirtNvmeDescriptor;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import picocli.CommandLine;

/**
 * {@code vhostd slave --control PATH --slave-id ID}: started by the master, never by hand. Connects to the master's
 * control socket, receives the arena and its controllers, and serves them until the master says shutdown or goes
 * away.
 */
@CommandLine.Command(name = "slave", description = "Run a vhostd slave (started by the master).", hidden = true)
public final class SlaveMain implements Callable<Integer> {
    private static final System.Logger LOG = System.getLogger(SlaveMain.class.getName());

    @CommandLine.Option(names = "--control", required = true, description = "The master's control socket.")
    String controlPath;

    @CommandLine.Option(names = "--slave-id", required = true, description = "Name the master gave this slave.")
    String slaveId;

    @CommandLine.Option(
            names = "--orphan-timeout-ms",
            defaultValue = "60000",
            description = "How long a slave serving controllers waits for a restarted master after its master died"
                    + " (issue #4); 0: exit at once.")
    long orphanTimeoutMs;

    /** How often an orphaned slave tries the control socket again while it waits for a restarted master. */
    private static final long RECONNECT_INTERVAL_NS = 20_000_000L;

    private final Map<String, SlaveController> controllers = new LinkedHashMap<>();
    /** Journals that arrived for controllers not added yet: name → mapped region. */
    private final Map<String, HugepageArena> journals = new HashMap<>();
    /** The journal mapping of each served controller, unmapped when the controller is removed (issue #5). */
    private final Map<String, HugepageArena> servedJournals = new java.util.concurrent.ConcurrentHashMap<>();
    /** Stats regions (issue #5, spec/stats.md) that arrived for controllers not added yet: name → mapped region. */
    private final Map<String, HugepageArena> statsRegions = new HashMap<>();
    /** The stats mapping of each served controller, unmapped when the controller is removed. */
    private final Map<String, HugepageArena> servedStats = new java.util.concurrent.ConcurrentHashMap<>();
    /** Sessions to adopt when their controller is added (issue #4): name → message and its fds. */
    private final Map<String, ControlChannel.Incoming> adoptions = new HashMap<>();
    /** Requests an upgraded-from slave left in flight, for the adoption of their controller (issue #4). */
    private final Map<String, ControlMessage.CarryOver> carryOvers = new HashMap<>();
    /** Controllers prepared for a rolling upgrade, waiting for their commit (issue #4): name → controller. */
    private final Map<String, SlaveController> prepared = new HashMap<>();

    public static void main(String[] args) {
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty(
                    "java.util.logging.SimpleFormatter.format", "%1$tF %1$tT.%1$tL %4$-7s [%3$s] %5$s%6$s%n");
        }
        System.exit(new CommandLine(new SlaveMain()).execute(args));
    }

    /**
     * Nice value of this slave's control thread (issue #4): a handover's pause waits for its wake-ups (release,
     * commit, adoption). {@code -Dvhostd.control.nice} (default -10; needs CAP_SYS_NICE, else ignored).
     */
    static final int CONTROL_NICE = Integer.getInteger("vhostd.control.nice", -10);

    @Override
    public Integer call() {
        // before the hello: the master counts a slave as ready (a standby) once it said hello (issue #4). At the nice
        // the slave was started with, not the control loop's: at -10 its CPU came from the guests (fio 61 k -> 34 k
        // IOPS while standbys warmed up); at 19 a standby took 5 s to be ready under a TCG guest (docs/benchmarks.md)
        LOG.log(System.Logger.Level.INFO, "slave " + slaveId + ": " + SlaveWarmup.run(SlaveWarmup::hurriedOnStdin));
        String favour = favour();
        canFavour = !favour.equals("unchanged");
        LOG.log(System.Logger.Level.INFO, "slave " + slaveId + ": control thread at " + favour);
        ControlChannel channel = ControlChannel.connect(controlPath);
        MasterLink master = new MasterLink(channel);
        channel.send(hello(slaveId));
        ControlChannel.Incoming welcome = channel.receive();
        if (welcome == null || !(welcome.message() instanceof ControlMessage.Welcome w) || welcome.fds().length != 1) {
            LOG.log(
                    System.Logger.Level.ERROR,
                    "master did not welcome us: " + (welcome == null ? "EOF" : welcome.message()));
            return 1;
        }
        arena = HugepageArena.attach(welcome.fds()[0], w.arenaSizeBytes());
        LOG.log(
                System.Logger.Level.INFO,
                "slave " + slaveId + " (pid " + ProcessHandle.current().pid() + ") attached to the master");
        while (true) {
            if (!favoured) {
                // the next message may be a handover's (release, commit, adoption): its wake-up must not wait
                favour();
            }
            ControlChannel.Incoming in;
            try {
                in = channel.receive();
            } catch (ControlChannel.ControlProtocolException e) {
                LOG.log(System.Logger.Level.WARNING, "control channel: " + e.getMessage());
                continue;
            } catch (io.vhostd.shm.linux.ErrnoException e) {
                // the same as EOF: e.g. ECONNRESET after a rejoin that reached a master still dying (the kernel closes
                // a dead process's fds one by one: its listening socket took the connection, then closed)
                LOG.log(System.Logger.Level.WARNING, "control channel: " + e.getMessage() + "; the master is gone");
                in = null;
            }
            if (in == null) {
                // the master died: without it no I/O completes, but the sessions stay open (issue #4)
                master.failAll("master gone");
                channel.close();
                channel = awaitRestartedMaster(master);
                continue;
            }
            // any message from here on is work: the background warm-up stops allocating
            SlaveWarmup.atWork();
            switch (in.message()) {
                case ControlMessage.Rejoined m -> {
                    closeAll(in.fds());
                    rejoined(m);
                }
                case ControlMessage.ControllerJournal m -> {
                    if (in.fds().length != 1 || m.lengthBytes() <= 0) {
                        LOG.log(System.Logger.Level.WARNING, "bad controller_journal " + m);
                        closeAll(in.fds());
                        continue;
                    }
                    try {
                        HugepageArena previous =
                                journals.put(m.controller(), HugepageArena.attach(in.fds()[0], m.lengthBytes()));
                        if (previous != null) {
                            previous.close();
                        }
                    } catch (RuntimeException e) {
                        LOG.log(
                                System.Logger.Level.ERROR,
                                m.controller() + ": cannot map the journal: " + e.getMessage());
                        Unistd.close(in.fds()[0]);
                    }
                }
                case ControlMessage.ControllerStats m -> controllerStats(m, in.fds());
                case ControlMessage.CarryOver m -> {
                    closeAll(in.fds());
                    carryOvers.put(m.controller(), m);
                }
                case ControlMessage.AdoptSession m -> {
                    ControlChannel.Incoming previous = adoptions.put(m.controller(), in);
                    if (previous != null) {
                        closeAll(previous.fds());
                    }
                }
                case ControlMessage.AddController m -> {
                    HugepageArena journal = journals.remove(m.name());
                    ControlChannel.Incoming adoption = adoptions.remove(m.name());
                    ControlMessage.CarryOver carryOver = carryOvers.remove(m.name());
                    try {
                        SlaveController c = new SlaveController(
                                m, in.fds(), arena.segment(), master, journal == null ? null : journal.segment());
                        controllers.put(m.name(), c);
                        attachStats(m.name(), c);
                        if (journal != null) {
                            servedJournals.put(m.name(), journal);
                        }
                        if (adoption != null) {
                            String error = null;
                            long resumedNs = 0;
                            try {
                                resumedNs =
                                        adoptSession(c, adoption, carryOver == null ? List.of() : carryOver.queues());
                            } catch (RuntimeException e) {
                                error = e.toString();
                                LOG.log(System.Logger.Level.ERROR, m.name() + ": cannot adopt the session: " + e, e);
                            }
                            master.send(new ControlMessage.SessionAdopted(m.name(), error, resumedNs));
                        }
                        c.start();
                        LOG.log(
                                System.Logger.Level.INFO,
                                "serving controller " + m.name() + " (" + m.numQueues() + " queue(s), "
                                        + m.capacityBytes() + " bytes)");
                    } catch (RuntimeException e) {
                        LOG.log(System.Logger.Level.ERROR, "cannot serve " + m.name() + ": " + e.getMessage(), e);
                        closeAll(in.fds());
                        if (adoption != null) {
                            closeAll(adoption.fds());
                            master.send(new ControlMessage.SessionAdopted(m.name(), e.toString(), 0));
                        }
                    }
                }
                case ControlMessage.PrepareController m -> {
                    // no guest waits for it, and the serving slave needs the CPUs meanwhile
                    unfavour(0);
                    prepare(m, in.fds(), arena, master);
                }
                case ControlMessage.CommitController m -> {
                    closeAll(in.fds());
                    commit(m, master, channel.lastReceivedNs());
                }
                case ControlMessage.ReleaseController m -> {
                    closeAll(in.fds());
                    release(m, master, channel.lastReceivedNs());
                }
                case ControlMessage.Ack m -> master.acked(m);
                case ControlMessage.RemoveController m -> {
                    closeAll(in.fds());
                    removeController(m.name(), controllers.remove(m.name()), master);
                }
                case ControlMessage.Shutdown m -> {
                    LOG.log(System.Logger.Level.INFO, "slave " + slaveId + ": shutdown (" + m.reason() + ")");
                    controllers.values().forEach(SlaveController::close);
                    // the kernel frees this process's memory in the context of its exiting threads (~0.1 ms per
                    // resident MB): at the lowest priority, the CPUs go to the guests and the slave serving them
                    io.vhostd.shm.linux.Priority.niceEveryThread(19);
                    Runtime.getRuntime().halt(0);
                }
                default -> {
                    LOG.log(System.Logger.Level.WARNING, "unexpected control message " + in.message());
                    for (int fd : in.fds()) {
                        Unistd.close(fd);
                    }
                }
            }
        }
    }

    /** Whether the control thread runs at its handover priority ({@link #favour}, not after {@link #unfavour}). */
    private boolean favoured;

    /** The control thread at its handover priority; returns what it got, for the log. */
    private String favour() {
        favoured = true;
        return io.vhostd.shm.linux.Priority.favourCurrentThread(
                CONTROL_NICE, io.vhostd.shm.linux.Priority.HANDOVER_RTPRIO);
    }

    /**
     * Work no guest waits for: after a handover's answer went out (controller_released, session_adopted) the guest's
     * pause goes on in the master and the other slave, or is over, and a prepare_controller comes while the old slave
     * still serves. This thread's clean-up, log lines and preparation run at nice {@code nice} rather than take a CPU
     * from the data paths, the master and the guests at SCHED_FIFO (a fresh JVM's first log line of a kind costs ~1 ms
     * of linkage; a prepare several). The loop favours the thread again before its next receive.
     */
    private void unfavour(int nice) {
        if (!canFavour) {
            // without CAP_SYS_NICE a raised nice value could not be lowered again: the thread keeps the one it has
            return;
        }
        io.vhostd.shm.linux.Priority.ordinaryCurrentThread(nice);
        favoured = false;
    }

    /** Whether favouring the control thread worked at start (CAP_SYS_NICE); if not, its priority is left alone. */
    private boolean canFavour;

    /** The arena the master gave us (welcome); a restarted master gets its fd back. */
    private HugepageArena arena;

    /**
     * Issue #4 master restart (control-channel.md "Master restart"): the master died. A standby (no controller) exits.
     * A slave serving controllers keeps its sessions, guest memory and queue pairs (their commands wait in the SQ)
     * and connects to the control socket again every 20 ms until a restarted master accepts, for at most {@link
     * #orphanTimeoutMs}; then it sends {@code rejoin}, each controller and {@code rejoin_done}, and returns the new
     * channel (the {@code rejoined} answer comes through the control loop). When no master comes back it exits: the
     * front-ends see their connections close and reconnect to whatever serves the sockets next.
     */
    private ControlChannel awaitRestartedMaster(MasterLink master) {
        if (controllers.isEmpty()) {
            LOG.log(System.Logger.Level.ERROR, "master gone; slave " + slaveId + " serves no controller and exits");
            Runtime.getRuntime().halt(1);
        }
        long goneNs = System.nanoTime();
        LOG.log(
                System.Logger.Level.WARNING,
                "master gone; slave " + slaveId + " keeps " + controllers.size()
                        + " controller(s) open and waits up to " + orphanTimeoutMs + " ms for a restarted master on "
                        + controlPath);
        long deadlineNs = goneNs + orphanTimeoutMs * 1_000_000L;
        while (System.nanoTime() - deadlineNs < 0) {
            ControlChannel next;
            try {
                next = ControlChannel.connect(controlPath);
            } catch (RuntimeException e) {
                java.util.concurrent.locks.LockSupport.parkNanos(RECONNECT_INTERVAL_NS);
                continue;
            }
            try {
                master.reconnect(next);
                ControlMessage.Hello h = hello(slaveId);
                next.send(
                        new ControlMessage.Rejoin(
                                h.protocolVersion(),
                                h.pid(),
                                h.build(),
                                h.journalVersion(),
                                h.virtNvmeVersion(),
                                slaveId,
                                arena.sizeBytes()),
                        arena.fd());
                for (Map.Entry<String, SlaveController> e : controllers.entrySet()) {
                    HugepageArena journal = servedJournals.get(e.getKey());
                    HugepageArena stats = servedStats.get(e.getKey());
                    e.getValue()
                            .rejoin(
                                    master,
                                    journal == null
                                            ? null
                                            : new SlaveController.SharedFd(journal.fd(), journal.sizeBytes()),
                                    stats == null ? null : new SlaveController.SharedFd(stats.fd(), stats.sizeBytes()));
                }
                next.send(new ControlMessage.RejoinDone(List.copyOf(controllers.keySet())));
                LOG.log(
                        System.Logger.Level.INFO,
                        "slave " + slaveId + ": connected to a restarted master "
                                + (System.nanoTime() - goneNs) / 1_000_000
                                + " ms after the last one went away; rejoining with " + controllers.keySet());
                return next;
            } catch (RuntimeException e) {
                LOG.log(System.Logger.Level.WARNING, "rejoin failed, retrying: " + e.getMessage());
                next.close();
                java.util.concurrent.locks.LockSupport.parkNanos(RECONNECT_INTERVAL_NS);
            }
        }
        LOG.log(
                System.Logger.Level.ERROR,
                "no master came back within " + orphanTimeoutMs + " ms; slave " + slaveId + " exits");
        Runtime.getRuntime().halt(1);
        return null;
    }

    /**
     * {@code rejoined}: the restarted master's answer. Refused as a whole → exit. Otherwise each controller it took
     * back resubmits what the dead master lost; one it did not take back is closed.
     */
    private void rejoined(ControlMessage.Rejoined m) {
        if (m.error() != null) {
            LOG.log(System.Logger.Level.ERROR, "the restarted master refused slave " + slaveId + ": " + m.error());
            controllers.values().forEach(SlaveController::close);
            Runtime.getRuntime().halt(1);
        }
        Map<String, ControlMessage.ControllerResume> byName = new HashMap<>();
        for (ControlMessage.ControllerResume r :
                m.controllers() == null ? List.<ControlMessage.ControllerResume>of() : m.controllers()) {
            if (r != null && r.name() != null) {
                byName.put(r.name(), r);
            }
        }
        for (String name : List.copyOf(controllers.keySet())) {
            ControlMessage.ControllerResume r = byName.get(name);
            if (r == null || r.error() != null || r.queues() == null) {
                LOG.log(
                        System.Logger.Level.ERROR,
                        "the restarted master did not take " + name + " back"
                                + (r == null || r.error() == null ? "" : ": " + r.error()) + "; closing it");
                SlaveController c = controllers.remove(name);
                c.close();
                closeServed(name);
                continue;
            }
            int n = controllers.get(name).masterRestarted(r);
            LOG.log(
                    System.Logger.Level.INFO,
                    name + ": re-adopted by the restarted master, " + n + " lost command(s) submitted again");
        }
    }

    private void closeServed(String name) {
        HugepageArena journal = servedJournals.remove(name);
        if (journal != null) {
            journal.close();
        }
        HugepageArena statsRegion = servedStats.remove(name);
        if (statsRegion != null) {
            statsRegion.close();
        }
    }

    /**
     * The hello: this build's control protocol, journal and VirtNvme versions. Fault injection (tests of the master's
     * refusal, issue #4): {@code -Dvhostd.fault.hello.slave=ID} with {@code -Dvhostd.fault.hello.journal-version=N}
     * and/or {@code -Dvhostd.fault.hello.virtnvme-version=N} make the slave named ID announce N instead.
     */
    static ControlMessage.Hello hello(String slaveId) {
        String build = SlaveMain.class.getPackage().getImplementationVersion();
        int journalVersion = JournalDescriptor.VERSION;
        int virtNvmeVersion = VirtNvmeDescriptor.VERSION;
        if (slaveId.equals(System.getProperty("vhostd.fault.hello.slave"))) {
            journalVersion =
                    Integer.decode(System.getProperty("vhostd.fault.hello.journal-version", "" + journalVersion));
            virtNvmeVersion =
                    Integer.decode(System.getProperty("vhostd.fault.hello.virtnvme-version", "" + virtNvmeVersion));
            LOG.log(
                    System.Logger.Level.WARNING,
                    "fault injection: announcing journal version 0x" + Integer.toHexString(journalVersion)
                            + ", VirtNvme version 0x" + Integer.toHexString(virtNvmeVersion));
        }
        return new ControlMessage.Hello(
                ControlMessage.PROTOCOL_VERSION,
                (int) ProcessHandle.current().pid(),
                build == null ? "dev" : build,
                journalVersion,
                virtNvmeVersion);
    }

    /**
     * {@code release_controller} (issue #4 rolling upgrade, control-channel.md "Rolling upgrade"): checks or releases
     * the controller; a released controller is forgotten here (the master hands it to another slave).
     */
    private void release(ControlMessage.ReleaseController m, MasterLink master, long readNs) {
        SlaveController c = controllers.get(m.controller());
        if (c == null) {
            master.send(new ControlMessage.ControllerReleased(
                    m.controller(), "no controller " + m.controller(), 0, 0, 0, List.of()));
            return;
        }
        String refusal = c.releaseRefusal();
        if (refusal != null || m.checkOnly()) {
            master.send(new ControlMessage.ControllerReleased(m.controller(), refusal, 0, 0, 0, List.of()));
            return;
        }
        SlaveController.Released r;
        try {
            r = c.release();
            controllers.remove(m.controller());
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, m.controller() + ": release failed: " + e.getMessage(), e);
            master.send(new ControlMessage.ControllerReleased(m.controller(), e.toString(), 0, 0, 0, List.of()));
            return;
        }
        // the guest waits from here until the next slave runs: the answer first, the clean-up and the log after
        master.send(new ControlMessage.ControllerReleased(
                m.controller(), null, r.stoppedFetchingNs(), r.releasedNs(), r.drainedRequests(), r.carried()));
        // a slave giving controllers up is on its way out: its clean-up comes last
        unfavour(19);
        c.closeReleased();
        int carried = 0;
        for (ControlMessage.CarriedQueue q : r.carried()) {
            carried += q.heads().size();
        }
        LOG.log(
                System.Logger.Level.INFO,
                m.controller() + ": released in " + (r.releasedNs() - r.stoppedFetchingNs()) / 1_000
                        + " us, release read " + (r.stoppedFetchingNs() - readNs) / 1_000 + " us before ("
                        + carried
                        + " request(s) handed over in flight, " + r.drainedRequests() + " drained)");
    }

    /**
     * {@code prepare_controller} (issue #4 rolling upgrade, control-channel.md "Rolling upgrade" step 2): builds the
     * controller from its add_controller, maps its journal and stats region (sent before) and starts its data-path
     * thread while the old slave still serves; answers {@code controller_prepared}. Peer input: a malformed spec or
     * wrong fds are answered with an error and the fds closed.
     */
    private void prepare(ControlMessage.PrepareController m, int[] fds, HugepageArena arena, MasterLink master) {
        ControlMessage.AddController spec = m.controller();
        if (spec == null || spec.name() == null || spec.qpairs() == null) {
            closeAll(fds);
            master.send(new ControlMessage.ControllerPrepared(
                    spec == null ? null : spec.name(), "prepare_controller without a controller"));
            return;
        }
        String name = spec.name();
        if (controllers.containsKey(name) || prepared.containsKey(name)) {
            closeAll(fds);
            master.send(new ControlMessage.ControllerPrepared(name, "controller " + name + " already here"));
            return;
        }
        HugepageArena journal = journals.remove(name);
        try {
            SlaveController c =
                    new SlaveController(spec, fds, arena.segment(), master, journal == null ? null : journal.segment());
            attachStats(name, c);
            if (journal != null) {
                servedJournals.put(name, journal);
            }
            c.prepare();
            prepared.put(name, c);
            // the pause comes next: a young collection now, while the old slave serves, rather than inside it
            YoungCollection.now();
            master.send(new ControlMessage.ControllerPrepared(name, null));
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, "cannot prepare " + name + ": " + e.getMessage(), e);
            closeAll(fds);
            if (journal != null) {
                servedJournals.remove(name);
                journal.close();
            }
            master.send(new ControlMessage.ControllerPrepared(name, e.toString()));
        }
    }

    /**
     * Continues the session {@code adoption} carried ({@code adopt_session}) in {@code c}, taking over {@code carried}
     * (rolling upgrade); returns when its queues went back on the data path (CLOCK_MONOTONIC, before the log and the
     * session thread). Fault injection for the master's fallback tests (issue #4): {@code
     * -Dvhostd.fault.adopt.slave=<this slave's id>} refuses every adoption.
     *
     * @throws RuntimeException if the session cannot be continued (the fds are closed)
     */
    private long adoptSession(
            SlaveController c, ControlChannel.Incoming adoption, List<ControlMessage.CarriedQueue> carried) {
        if (slaveId.equals(System.getProperty("vhostd.fault.adopt.slave"))) {
            closeAll(adoption.fds());
            throw new IllegalStateException("fault injection: adoption refused");
        }
        c.adopt((ControlMessage.AdoptSession) adoption.message(), adoption.fds(), carried);
        return c.resumedNs();
    }

    /**
     * {@code commit_controller} (issue #4 rolling upgrade, step 3): the old slave released the controller; attaches to
     * its queue pairs at the published positions, adopts the session if an adopt_session came (taking the carried
     * requests over) and serves it. Always answers {@code session_adopted} (an unprepared name or a refused adoption
     * with an error), then {@code controller_listening} if the controller runs.
     */
    private void commit(ControlMessage.CommitController m, MasterLink master, long readNs) {
        SlaveController c = m.name() == null ? null : prepared.remove(m.name());
        ControlChannel.Incoming adoption = m.name() == null ? null : adoptions.remove(m.name());
        if (c == null) {
            if (adoption != null) {
                closeAll(adoption.fds());
            }
            master.send(new ControlMessage.SessionAdopted(m.name(), "controller " + m.name() + " not prepared", 0));
            return;
        }
        String error = null;
        long resumedNs = 0;
        long receivedNs = System.nanoTime();
        // the data-path thread is favoured from now, before the queue starts reach it
        c.agent().expectHandover();
        try {
            c.commitQueuePairs();
            controllers.put(m.name(), c);
            if (adoption != null) {
                resumedNs = adoptSession(c, adoption, m.carried() == null ? List.of() : m.carried());
            } else {
                resumedNs = System.nanoTime();
            }
        } catch (RuntimeException e) {
            error = e.toString();
            LOG.log(System.Logger.Level.ERROR, m.name() + ": cannot adopt the session: " + e, e);
            if (controllers.get(m.name()) != c) {
                // not even attached to its queue pairs: nothing of it runs
                c.close();
                if (adoption != null) {
                    closeAll(adoption.fds());
                }
            }
        }
        master.send(new ControlMessage.SessionAdopted(m.name(), error, resumedNs));
        if (controllers.get(m.name()) == c) {
            // controller_listening goes out from here, and the next controller's commit may follow at once: the thread
            // is still favoured; only the log line below is not
            c.start();
        }
        // the guest's backlog behind the pause goes first (the data path runs at nice -10 for a while)
        unfavour(10);
        if (controllers.get(m.name()) == c) {
            LOG.log(
                    System.Logger.Level.INFO,
                    "serving controller " + m.name() + " (" + c.spec().numQueues() + " queue(s), prepared; commit"
                            + " read at " + readNs + " ns, decoded at " + receivedNs + " ns)");
        }
    }

    /**
     * {@code remove_controller} (control-channel.md "Removing a controller"): on its own thread, because ending the
     * session waits for acks that this loop delivers; answers {@code controller_removed}.
     */
    private void removeController(String name, SlaveController c, MasterLink master) {
        Thread.ofPlatform().name("remove-" + name).daemon(true).start(() -> {
            String error = null;
            if (c != null) {
                try {
                    c.remove(REMOVE_TIMEOUT_MS);
                } catch (RuntimeException e) {
                    error = e.getMessage();
                    LOG.log(System.Logger.Level.WARNING, "remove " + name + ": " + error);
                }
            }
            closeServed(name);
            LOG.log(
                    System.Logger.Level.INFO,
                    "controller " + name + " removed" + (c == null ? " (was not served)" : ""));
            master.send(new ControlMessage.ControllerRemoved(name, error));
        });
    }

    /** {@code controller_stats} (control-channel.md): maps the region until the controller is added. */
    private void controllerStats(ControlMessage.ControllerStats m, int[] fds) {
        if (fds.length != 1 || m.lengthBytes() <= 0) {
            LOG.log(System.Logger.Level.WARNING, "bad controller_stats " + m);
            closeAll(fds);
            return;
        }
        try {
            HugepageArena previous = statsRegions.put(m.controller(), HugepageArena.attach(fds[0], m.lengthBytes()));
            if (previous != null) {
                previous.close();
            }
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, m.controller() + ": cannot map the stats region: " + e.getMessage());
            Unistd.close(fds[0]);
        }
    }

    /**
     * System property {@code vhostd.stats.count} (default true): false leaves the data path without its stats region,
     * so nothing is counted. Only for measuring what counting costs (scripts/bench-libblkio.sh {@code @nostats}).
     */
    private static final boolean COUNT_STATS = Boolean.parseBoolean(System.getProperty("vhostd.stats.count", "true"));

    /** Hands the controller's stats region to its data path (before it starts); without one nothing is counted. */
    private void attachStats(String name, SlaveController c) {
        HugepageArena region = statsRegions.remove(name);
        if (region == null) {
            return;
        }
        if (!COUNT_STATS) {
            region.close();
            return;
        }
        try {
            c.agent().stats(region.segment());
            HugepageArena previous = servedStats.put(name, region);
            if (previous != null) {
                previous.close();
            }
        } catch (RuntimeException e) {
            LOG.log(System.Logger.Level.ERROR, name + ": stats region unusable: " + e.getMessage());
            region.close();
        }
    }

    /** How long {@code remove_controller} waits for the controller's session to end. */
    private static final long REMOVE_TIMEOUT_MS = 10_000;

    private static void closeAll(int[] fds) {
        for (int fd : fds) {
            Unistd.close(fd);
        }
    }
}
