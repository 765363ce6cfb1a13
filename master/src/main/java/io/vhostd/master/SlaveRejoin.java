package io.vhostd.master;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.master.config.ControllerConfig;
import io.vhostd.shm.control.ControlChannel;
import io.vhostd.shm.control.ControlMessage;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.Unistd;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Issue #4 master restart (control-channel.md "Master restart"): what a slave of the dead master handed back when it
 * rejoined — the arena, per controller its listening socket, queue pair eventfds, journal and stats region, the
 * session fds it holds and the guest memory regions it registered — received and shape-checked here; the master
 * checks it against its configuration and takes it over. Every fd not taken is closed by {@link #closeUntaken()}.
 *
 * <p>Also the run directory's state file ({@code slaves.json}) that tells a restarted master which slave to wait
 * for: the master's pid and the serving slave's id and pid, each with its start time in clock ticks since boot
 * ({@code /proc/PID/stat} field 22), so that a reused pid is not mistaken for it.
 */
final class SlaveRejoin {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** The state file's name in the run directory. */
    static final String STATE_FILE = "slaves.json";

    /** One controller as the slave described it, with its fds (-1 once taken). */
    static final class Controller {
        final ControlMessage.RejoinController spec;
        int listenFd;
        final int[] sqEventFds;
        final int[] cqEventFds;
        int journalFd;
        int statsFd;

        Controller(ControlMessage.RejoinController spec, int[] fds) {
            this.spec = spec;
            int n = spec.numQueues();
            this.listenFd = fds[0];
            this.sqEventFds = new int[n];
            this.cqEventFds = new int[n];
            for (int q = 0; q < n; q++) {
                sqEventFds[q] = fds[1 + 2 * q];
                cqEventFds[q] = fds[2 + 2 * q];
            }
            this.journalFd = fds[1 + 2 * n];
            this.statsFd = spec.statsLengthBytes() > 0 ? fds[2 + 2 * n] : -1;
        }
    }

    /** A session fd the slave holds (control-channel.md rule 3); {@code fd} -1 once taken. */
    static final class HeldFd {
        final String controller;
        final String what;
        final int index;
        int fd;

        HeldFd(String controller, String what, int index, int fd) {
            this.controller = controller;
            this.what = what;
            this.index = index;
            this.fd = fd;
        }
    }

    /** A guest memory region the slave registered; {@code fd} -1 once taken. */
    static final class Region {
        final ControlMessage.RegisterRegion spec;
        int fd;

        Region(ControlMessage.RegisterRegion spec, int fd) {
            this.spec = spec;
            this.fd = fd;
        }
    }

    final ControlChannel channel;
    final ControlMessage.Rejoin hello;
    int arenaFd;
    final Map<String, Controller> controllers = new LinkedHashMap<>();
    final List<HeldFd> held = new ArrayList<>();
    final List<Region> regions = new ArrayList<>();
    /** The slave as a process (a pidfd), set by the master once it accepted the rejoin. */
    AdoptedProcess process;

    private SlaveRejoin(ControlChannel channel, ControlMessage.Rejoin hello, int arenaFd) {
        this.channel = channel;
        this.hello = hello;
        this.arenaFd = arenaFd;
    }

    /**
     * Reads {@code rejoin}, the controllers, their custody and region messages, up to {@code rejoin_done}, each
     * within what is left of {@code timeoutMs}. Peer input: every message's shape and fd count is checked.
     *
     * @throws IllegalStateException on EOF, a timeout, an unexpected or malformed message (every fd received so far is
     *     closed)
     */
    static SlaveRejoin receive(ControlChannel channel, long timeoutMs) {
        long deadlineNs = System.nanoTime() + timeoutMs * 1_000_000L;
        ControlChannel.Incoming first = next(channel, deadlineNs);
        if (!(first.message() instanceof ControlMessage.Rejoin r) || first.fds().length != 1) {
            closeAll(first.fds());
            throw new IllegalStateException("expected rejoin with the arena fd, got " + first.message());
        }
        if (r.arenaSizeBytes() <= 0 || r.slaveId() == null || !r.slaveId().matches("slave-[0-9]{1,9}")) {
            closeAll(first.fds());
            throw new IllegalStateException("bad rejoin " + r);
        }
        SlaveRejoin out = new SlaveRejoin(channel, r, first.fds()[0]);
        try {
            while (true) {
                ControlChannel.Incoming in = next(channel, deadlineNs);
                switch (in.message()) {
                    case ControlMessage.RejoinController m -> out.addController(m, in.fds());
                    case ControlMessage.Custody m -> {
                        if (in.fds().length != 1 || !out.controllers.containsKey(m.controller()) || m.what() == null) {
                            closeAll(in.fds());
                            throw new IllegalStateException("bad custody message " + m);
                        }
                        out.held.add(new HeldFd(m.controller(), m.what(), m.index(), in.fds()[0]));
                    }
                    case ControlMessage.RegisterRegion m -> {
                        if (in.fds().length != 1 || !out.controllers.containsKey(m.controller())) {
                            closeAll(in.fds());
                            throw new IllegalStateException("bad register_region " + m);
                        }
                        out.regions.add(new Region(m, in.fds()[0]));
                    }
                    case ControlMessage.RejoinDone m -> {
                        closeAll(in.fds());
                        if (m.controllers() == null
                                || !new java.util.HashSet<>(m.controllers()).equals(out.controllers.keySet())) {
                            throw new IllegalStateException(
                                    "rejoin_done names " + m.controllers() + ", sent " + out.controllers.keySet());
                        }
                        return out;
                    }
                    // the slave's session threads may report state meanwhile: it is reported again later
                    case ControlMessage.SessionState m -> closeAll(in.fds());
                    default -> {
                        closeAll(in.fds());
                        throw new IllegalStateException("unexpected " + in.message() + " during rejoin");
                    }
                }
            }
        } catch (RuntimeException e) {
            out.closeUntaken();
            throw e;
        }
    }

    private void addController(ControlMessage.RejoinController m, int[] fds) {
        int n = m.numQueues();
        boolean shaped = m.name() != null
                && m.bdev() != null
                && n >= 1
                && n <= ControllerConfig.MAX_NUM_QUEUES
                && m.qpairs() != null
                && m.qpairs().size() == n
                && m.journalLengthBytes() > 0
                && m.statsLengthBytes() >= 0
                && fds.length == 2 + 2 * n + (m.statsLengthBytes() > 0 ? 1 : 0)
                && !controllers.containsKey(m.name());
        if (!shaped) {
            closeAll(fds);
            throw new IllegalStateException("bad rejoin_controller " + m + " with " + fds.length + " fd(s)");
        }
        controllers.put(m.name(), new Controller(m, fds));
    }

    private static ControlChannel.Incoming next(ControlChannel channel, long deadlineNs) {
        while (true) {
            long leftMs = (deadlineNs - System.nanoTime()) / 1_000_000L;
            if (leftMs <= 0) {
                throw new IllegalStateException("the slave did not finish rejoining in time");
            }
            if ((Poll.poll(channel.fd(), Poll.POLLIN, (int) Math.min(leftMs, 1_000)) & (Poll.POLLIN | Poll.POLLHUP))
                    == 0) {
                continue;
            }
            ControlChannel.Incoming in = channel.receive();
            if (in == null) {
                throw new IllegalStateException("the slave closed the control connection while rejoining");
            }
            return in;
        }
    }

    /** Closes every fd nobody took (the arena, a controller's, a session's, a region's). */
    void closeUntaken() {
        arenaFd = close(arenaFd);
        for (Controller c : controllers.values()) {
            c.listenFd = close(c.listenFd);
            for (int q = 0; q < c.sqEventFds.length; q++) {
                c.sqEventFds[q] = close(c.sqEventFds[q]);
                c.cqEventFds[q] = close(c.cqEventFds[q]);
            }
            c.journalFd = close(c.journalFd);
            c.statsFd = close(c.statsFd);
        }
        for (HeldFd h : held) {
            h.fd = close(h.fd);
        }
        for (Region r : regions) {
            r.fd = close(r.fd);
        }
    }

    private static int close(int fd) {
        if (fd >= 0) {
            Unistd.close(fd);
        }
        return -1;
    }

    private static void closeAll(int[] fds) {
        for (int fd : fds) {
            Unistd.close(fd);
        }
    }

    // --- the state file ---

    /** What {@code slaves.json} says: the master that wrote it and the slave that served then. */
    record State(long masterPid, long masterStartTicks, String slaveId, long slavePid, long slaveStartTicks) {
        /** Whether the master that wrote the file still runs (same pid and start time). */
        boolean masterAlive() {
            return masterPid > 0 && startTicks(masterPid) == masterStartTicks;
        }

        /** Whether the serving slave still runs (same pid and start time). */
        boolean slaveAlive() {
            return slavePid > 0 && startTicks(slavePid) == slaveStartTicks;
        }
    }

    /**
     * Writes the state file atomically (temporary file + rename): this master and {@code slaveId}/{@code slavePid}
     * serving.
     */
    static void writeState(Path file, String slaveId, long slavePid) throws IOException {
        long self = ProcessHandle.current().pid();
        ObjectNode o = JSON.createObjectNode();
        o.put("master_pid", self);
        o.put("master_start_ticks", startTicks(self));
        ObjectNode serving = o.putObject("serving");
        serving.put("slave_id", slaveId);
        serving.put("pid", slavePid);
        serving.put("start_ticks", startTicks(slavePid));
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        Files.writeString(tmp, JSON.writerWithDefaultPrettyPrinter().writeValueAsString(o) + "\n");
        Files.move(tmp, file, StandardCopyOption.ATOMIC_MOVE, StandardCopyOption.REPLACE_EXISTING);
    }

    /**
     * Reads the state file; null when there is none.
     *
     * @throws IOException if it cannot be read or parsed
     */
    static State readState(Path file) throws IOException {
        if (!Files.exists(file)) {
            return null;
        }
        JsonNode o = JSON.readTree(Files.readString(file));
        JsonNode serving = o.path("serving");
        return new State(
                o.path("master_pid").asLong(0),
                o.path("master_start_ticks").asLong(-1),
                serving.path("slave_id").asText(""),
                serving.path("pid").asLong(0),
                serving.path("start_ticks").asLong(-1));
    }

    /**
     * The process's start time in clock ticks since boot ({@code /proc/PID/stat} field 22), or -1 when it does not
     * exist (or is a zombie: it exited).
     */
    static long startTicks(long pid) {
        try {
            String stat = Files.readString(Path.of("/proc", Long.toString(pid), "stat"), StandardCharsets.US_ASCII);
            // the command name (field 2) may hold spaces and parentheses: fields 3.. follow the last ')'
            String[] f = stat.substring(stat.lastIndexOf(')') + 2).trim().split(" ");
            if (f[0].equals("Z") || f[0].equals("X")) {
                return -1;
            }
            return Long.parseLong(f[19]);
        } catch (IOException | RuntimeException e) {
            return -1;
        }
    }
}
