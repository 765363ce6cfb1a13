package io.vhostd.slave;

import io.vhostd.shm.arena.HugepageArena;
import io.vhostd.shm.control.ControlChannel;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.linux.Unistd;
import java.util.HashMap;
import java.util.LinkedHashMap;
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

    private final Map<String, SlaveController> controllers = new LinkedHashMap<>();
    /** Journals that arrived for controllers not added yet: name → mapped region. */
    private final Map<String, HugepageArena> journals = new HashMap<>();
    /** Sessions to adopt when their controller is added (issue #4): name → message and its fds. */
    private final Map<String, ControlChannel.Incoming> adoptions = new HashMap<>();

    public static void main(String[] args) {
        if (System.getProperty("java.util.logging.SimpleFormatter.format") == null) {
            System.setProperty(
                    "java.util.logging.SimpleFormatter.format", "%1$tF %1$tT.%1$tL %4$-7s [%3$s] %5$s%6$s%n");
        }
        System.exit(new CommandLine(new SlaveMain()).execute(args));
    }

    @Override
    public Integer call() {
        ControlChannel channel = ControlChannel.connect(controlPath);
        MasterLink master = new MasterLink(channel);
        channel.send(new ControlMessage.Hello(
                ControlMessage.PROTOCOL_VERSION,
                (int) ProcessHandle.current().pid(),
                SlaveMain.class.getPackage().getImplementationVersion() == null
                        ? "dev"
                        : SlaveMain.class.getPackage().getImplementationVersion()));
        ControlChannel.Incoming welcome = channel.receive();
        if (welcome == null || !(welcome.message() instanceof ControlMessage.Welcome w) || welcome.fds().length != 1) {
            LOG.log(
                    System.Logger.Level.ERROR,
                    "master did not welcome us: " + (welcome == null ? "EOF" : welcome.message()));
            return 1;
        }
        HugepageArena arena = HugepageArena.attach(welcome.fds()[0], w.arenaSizeBytes());
        LOG.log(
                System.Logger.Level.INFO,
                "slave " + slaveId + " (pid " + ProcessHandle.current().pid() + ") attached to the master");
        while (true) {
            ControlChannel.Incoming in;
            try {
                in = channel.receive();
            } catch (ControlChannel.ControlProtocolException e) {
                LOG.log(System.Logger.Level.WARNING, "control channel: " + e.getMessage());
                continue;
            }
            if (in == null) {
                // the master died: without it no I/O completes. Issue #4 keeps serving until a new master adopts us.
                LOG.log(System.Logger.Level.ERROR, "master gone; slave " + slaveId + " exits");
                master.failAll("master gone");
                Runtime.getRuntime().halt(1);
            }
            switch (in.message()) {
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
                case ControlMessage.AdoptSession m -> {
                    ControlChannel.Incoming previous = adoptions.put(m.controller(), in);
                    if (previous != null) {
                        closeAll(previous.fds());
                    }
                }
                case ControlMessage.AddController m -> {
                    HugepageArena journal = journals.remove(m.name());
                    ControlChannel.Incoming adoption = adoptions.remove(m.name());
                    try {
                        SlaveController c = new SlaveController(
                                m, in.fds(), arena.segment(), master, journal == null ? null : journal.segment());
                        controllers.put(m.name(), c);
                        if (adoption != null) {
                            String error = null;
                            try {
                                c.adopt((ControlMessage.AdoptSession) adoption.message(), adoption.fds());
                            } catch (RuntimeException e) {
                                error = e.toString();
                                LOG.log(System.Logger.Level.ERROR, m.name() + ": cannot adopt the session: " + e, e);
                            }
                            master.send(new ControlMessage.SessionAdopted(m.name(), error));
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
                            master.send(new ControlMessage.SessionAdopted(m.name(), e.toString()));
                        }
                    }
                }
                case ControlMessage.Ack m -> master.acked(m);
                case ControlMessage.Shutdown m -> {
                    LOG.log(System.Logger.Level.INFO, "slave " + slaveId + ": shutdown (" + m.reason() + ")");
                    controllers.values().forEach(SlaveController::close);
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

    private static void closeAll(int[] fds) {
        for (int fd : fds) {
            Unistd.close(fd);
        }
    }
}
