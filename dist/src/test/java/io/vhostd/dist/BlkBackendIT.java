package io.vhostd.dist;

import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.shm.linux.Poll;
import io.vhostd.shm.linux.SdNotify;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import java.io.File;
import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.net.StandardProtocolFamily;
import java.net.UnixDomainSocketAddress;
import java.nio.channels.SocketChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Tag;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code bin/vhostd-user-blk} (vhost-user.rst "Backend program conventions") as a process, with this test playing
 * systemd: a {@code SOCK_DGRAM} socket named in {@code $NOTIFY_SOCKET} receives {@code READY=1} once the disk's socket
 * is served, watchdog keep-alives, and {@code STOPPING=1} on SIGTERM; the back-end leaves no process and no run
 * directory behind. Needs the jar; no QEMU.
 */
@Tag("integration")
class BlkBackendIT {
    private static final Duration READY_TIMEOUT = Duration.ofSeconds(90);
    private static final Duration STOP_TIMEOUT = Duration.ofSeconds(30);

    @TempDir
    Path dir;

    private ItEnv env;
    private Path image;
    private String notifyName;
    private int notifyFd = -1;
    private Process process;
    private Path log;

    @BeforeEach
    void setUp() throws IOException {
        env = ItEnv.forTest(getClass());
        image = dir.resolve("disk.img");
        Files.write(image, new byte[4 << 20]);
        notifyName = "vhostd-it-notify-" + ProcessHandle.current().pid() + "-" + System.nanoTime();
        notifyFd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_DGRAM | Socket.SOCK_CLOEXEC, 0);
        Socket.bind(notifyFd, "\0" + notifyName);
        Files.createDirectories(dir.resolve("xdg"));
    }

    @AfterEach
    void tearDown() {
        if (process != null && process.isAlive()) {
            process.descendants().forEach(ProcessHandle::destroyForcibly);
            process.destroyForcibly();
        }
        Unistd.close(notifyFd);
    }

    private Process start(String name, List<String> command) throws IOException {
        log = env.logDir().resolve(name + ".log");
        ProcessBuilder builder = new ProcessBuilder(command)
                .directory(dir.toFile())
                .redirectErrorStream(true)
                .redirectOutput(ProcessBuilder.Redirect.to(log.toFile()))
                .redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        builder.environment().put("VHOSTD_JAR", env.launchJar().toString());
        builder.environment().put(SdNotify.NOTIFY_SOCKET_ENV, "@" + notifyName);
        // 400 ms: keep-alives every 200 ms, so the test sees one soon after READY=1
        builder.environment().put(SdNotify.WATCHDOG_USEC_ENV, "400000");
        builder.environment().put("XDG_RUNTIME_DIR", dir.resolve("xdg").toString());
        builder.environment().remove("RUNTIME_DIRECTORY");
        process = builder.start();
        return process;
    }

    /** The next notification, waiting at most {@code timeout}; fails with the back-end's log when none comes. */
    private String nextNotification(Duration timeout) {
        int revents = Poll.poll(notifyFd, Poll.POLLIN, (int) timeout.toMillis());
        if ((revents & Poll.POLLIN) == 0) {
            throw new AssertionError("no notification within " + timeout + "; back-end alive: " + process.isAlive()
                    + "\n" + VhostdMaster.tail(log, 40));
        }
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment buf = arena.allocate(SdNotify.MAX_MESSAGE_BYTES);
            Socket.Received r = Socket.recvmsg(notifyFd, buf, buf.byteSize(), 0);
            return new String(buf.asSlice(0, r.bytes()).toArray(JAVA_BYTE), StandardCharsets.UTF_8);
        }
    }

    /** Notifications until one starts with {@code prefix} (returned); the others are collected in {@code seen}. */
    private String awaitNotification(String prefix, Duration timeout, List<String> seen) {
        long deadlineNs = System.nanoTime() + timeout.toNanos();
        while (true) {
            long leftMs = TimeUnit.NANOSECONDS.toMillis(deadlineNs - System.nanoTime());
            if (leftMs <= 0) {
                throw new AssertionError(
                        "no " + prefix + " within " + timeout + "; got " + seen + "\n" + VhostdMaster.tail(log, 40));
            }
            String n = nextNotification(Duration.ofMillis(leftMs));
            if (n.startsWith(prefix)) {
                return n;
            }
            seen.add(n);
        }
    }

    private static boolean accepts(Path socket) {
        try (SocketChannel channel = SocketChannel.open(StandardProtocolFamily.UNIX)) {
            return channel.connect(UnixDomainSocketAddress.of(socket));
        } catch (IOException e) {
            return false;
        }
    }

    /** SIGTERM, then STOPPING=1, exit, and nothing left: no process of ours, no private run directory. */
    private void stopAndCheck(List<String> seen) throws Exception {
        List<ProcessHandle> ours = new ArrayList<>(process.descendants().toList());
        ours.add(process.toHandle());
        process.destroy(); // SIGTERM
        String stopping = awaitNotification(SdNotify.STOPPING, STOP_TIMEOUT, seen);
        assertEquals("STOPPING=1\nSTATUS=stopping: signal", stopping);
        assertTrue(process.waitFor(STOP_TIMEOUT.toSeconds(), TimeUnit.SECONDS), VhostdMaster.tail(log, 40));
        // SIGTERM ends the JVM through its shutdown hooks: 128 + 15
        assertEquals(143, process.exitValue(), VhostdMaster.tail(log, 40));
        for (ProcessHandle p : ours) {
            assertTrue(p.onExit().get(STOP_TIMEOUT.toSeconds(), TimeUnit.SECONDS) != null);
        }
        try (Stream<Path> left = Files.list(dir.resolve("xdg"))) {
            assertEquals(List.of(), left.toList(), "the private run directory is removed at exit");
        }
    }

    @Test
    @Timeout(value = 1, unit = TimeUnit.MINUTES)
    void shouldPrintCapabilitiesAndExitZeroWhenAskedWithOtherArguments() throws Exception {
        Process p = start(
                "capabilities",
                List.of(
                        env.repoPath("bin/vhostd-user-blk").toString(),
                        "--socket-path=/nonexistent/x.sock",
                        "--print-capabilities",
                        "--no-such-option"));
        assertTrue(p.waitFor(60, TimeUnit.SECONDS));
        assertEquals(0, p.exitValue(), VhostdMaster.tail(log, 20));
        ObjectMapper json = new ObjectMapper();
        assertEquals(json.readTree(BlkMain.CAPABILITIES_JSON), json.readTree(Files.readString(log)));
    }

    @Test
    @Timeout(value = 3, unit = TimeUnit.MINUTES)
    void shouldNotifyReadyKeepAliveAndStoppingWhenRunBySystemd() throws Exception {
        Path socket = dir.resolve("vub.sock");
        start(
                "socket-path",
                List.of(
                        env.repoPath("bin/vhostd-user-blk").toString(),
                        "--socket-path=" + socket,
                        "--blk-file=" + image,
                        "--num-queues=2"));
        List<String> seen = new ArrayList<>();
        String ready = awaitNotification(SdNotify.READY, READY_TIMEOUT, seen);
        assertTrue(ready.startsWith("READY=1\nSTATUS=ready: 1 controller(s), slave pid "), ready);
        assertTrue(seen.contains("STATUS=starting: bdevs, arena, controllers, slave, rpc"), seen.toString());
        assertTrue(accepts(socket), "READY=1 came before the disk's socket accepted connections");
        assertEquals(SdNotify.WATCHDOG, awaitNotification(SdNotify.WATCHDOG, Duration.ofSeconds(10), seen));
        stopAndCheck(seen);
        assertTrue(!Files.exists(socket), "a socket the back-end created is removed at exit");
    }

    @Test
    @Timeout(value = 3, unit = TimeUnit.MINUTES)
    void shouldServeInheritedListenerAndLeaveItsPathWhenStartedWithFd() throws Exception {
        assumeTrue(Files.isExecutable(Path.of("/usr/bin/python3")), "python3 passes the listening socket");
        Path socket = dir.resolve("made-by-manager.sock");
        // what a management layer does: bind + listen, then exec the back-end with the socket as fd 3
        String python = "import os, socket, sys\n"
                + "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
                + "s.bind(sys.argv[1])\n"
                + "s.listen(16)\n"
                + "if s.fileno() != 3:\n"
                + "    os.dup2(s.fileno(), 3)\n"
                // Python's sockets are close-on-exec; dup2 to itself would keep that
                + "os.set_inheritable(3, True)\n"
                + "os.execv(sys.argv[2], sys.argv[2:])\n";
        start(
                "fd",
                List.of(
                        "/usr/bin/python3",
                        "-c",
                        python,
                        socket.toString(),
                        env.repoPath("bin/vhostd-user-blk").toString(),
                        "--fd=3",
                        "--blk-file=" + image,
                        "--read-only"));
        List<String> seen = new ArrayList<>();
        awaitNotification(SdNotify.READY, READY_TIMEOUT, seen);
        assertTrue(accepts(socket), "the inherited listener is served");
        stopAndCheck(seen);
        assertTrue(Files.exists(socket), "the back-end does not unlink a socket it was handed (--fd)");
    }
}
