package io.vhostd.dist;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.master.config.BdevConfig;
import io.vhostd.master.config.ControllerConfig;
import io.vhostd.master.config.VhostdConfig;
import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Eventfd;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.Socket;
import io.vhostd.shm.linux.Unistd;
import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

/**
 * {@code vhostd blk} and {@code --print-capabilities} (vhost-user.rst "Backend program conventions") without starting a
 * master: the capabilities, the in-memory configuration, the checks of {@code --fd} and of the arguments.
 */
@Timeout(30)
class BlkMainTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    @Test
    void shouldPrintBlockCapabilitiesOfVhostUserJsonWhenAsked() throws Exception {
        JsonNode caps = JSON.readTree(BlkMain.CAPABILITIES_JSON);
        // vhost-user.json: VHostUserBackendCapabilities {type} + VHostUserBackendCapabilitiesBlock {features}, the
        // features from VHostUserBackendBlockFeature
        assertEquals(JSON.readTree("{\"type\":\"block\",\"features\":[\"read-only\",\"blk-file\"]}"), caps);
        assertTrue(BlkMain.CAPABILITIES_JSON.endsWith("\n"));
    }

    @Test
    void shouldDecideOnCapabilitiesBeforeParsingWhenFlagPresent() {
        assertTrue(Main.printsCapabilities(new String[] {"--print-capabilities"}));
        assertTrue(Main.printsCapabilities(new String[] {"--print-capabilities", "--bogus"}));
        assertTrue(Main.printsCapabilities(new String[] {"blk", "--socket-path=/x", "--print-capabilities", "junk"}));
        assertFalse(Main.printsCapabilities(new String[] {}));
        assertFalse(Main.printsCapabilities(new String[] {"master", "--config", "--print-capabilities"}));
        assertFalse(Main.printsCapabilities(new String[] {"vhostctl", "rpc", "m", "--print-capabilities"}));
    }

    @Test
    void shouldPrintCapabilitiesAndExitZeroWhenBlkRunsWithFlag() {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        PrintStream saved = System.out;
        int rc;
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            rc = new CommandLine(new BlkMain()).execute("--print-capabilities");
        } finally {
            System.setOut(saved);
        }
        assertEquals(0, rc);
        assertEquals(BlkMain.CAPABILITIES_JSON, out.toString(StandardCharsets.UTF_8));
    }

    @Test
    void shouldConfigureOneFileBdevAndOneControllerWhenGivenSocketPathAndFile() throws Exception {
        Path image = dir.resolve("guest-disk.img");
        Files.write(image, new byte[1 << 20]);
        VhostdConfig config = VhostdConfig.parse(BlkMain.configJson(
                dir.resolve("run"), image, dir.resolve("vub.sock").toString(), true, 4, null));
        assertEquals(dir.resolve("run").toString(), config.runDir());
        assertEquals(1, config.bdevs().size());
        BdevConfig bdev = config.bdevs().get(0);
        assertEquals(BlkMain.NAME, bdev.name());
        assertEquals(BdevConfig.TYPE_FILE, bdev.type());
        assertEquals(image.toString(), bdev.path());
        assertEquals(1L << 20, bdev.sizeBytes());
        assertTrue(bdev.readOnly());
        ControllerConfig controller = config.controllers().get(0);
        assertEquals(ControllerConfig.TYPE_VHOST_USER_BLK, controller.type());
        assertEquals(BlkMain.NAME, controller.bdev());
        assertEquals(dir.resolve("vub.sock").toString(), controller.socket());
        assertEquals(4, controller.numQueues());
        assertTrue(controller.readOnly());
        assertEquals("guest-disk.img", controller.serial());
    }

    @Test
    void shouldCutDefaultSerialToTwentyBytesWhenFileNameIsLong() {
        assertEquals("a-very-long-disk-ima", BlkMain.defaultSerial(Path.of("/var/lib/a-very-long-disk-image.raw")));
        // a multi-byte character is never split
        assertEquals("é".repeat(10), BlkMain.defaultSerial(Path.of("/x/" + "é".repeat(11))));
        assertEquals("é".repeat(9) + "a", BlkMain.defaultSerial(Path.of("/x/" + "é".repeat(9) + "aé")));
    }

    @Test
    void shouldAcceptListeningUnixStreamSocketWhenInheritedAsFd() {
        Path path = dir.resolve("libvirt-made.sock");
        int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM, 0);
        try {
            Socket.bind(fd, path.toString());
            Socket.listen(fd, 1);
            assertEquals(path.toString(), BlkMain.inheritedListener(fd));
            assertEquals(Fcntl.FD_CLOEXEC, Fcntl.fcntl(fd, Fcntl.F_GETFD, 0) & Fcntl.FD_CLOEXEC);
        } finally {
            Unistd.close(fd);
        }
    }

    @Test
    void shouldRefuseFdWhenItIsNoListeningStreamSocket() {
        int stream = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
        int dgram = Socket.socket(Socket.AF_UNIX, Socket.SOCK_DGRAM | Socket.SOCK_CLOEXEC, 0);
        int efd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        try {
            assertThrows(IllegalArgumentException.class, () -> BlkMain.inheritedListener(stream));
            assertThrows(IllegalArgumentException.class, () -> BlkMain.inheritedListener(dgram));
            assertEquals(
                    Errno.ENOTSOCK,
                    assertThrows(ErrnoException.class, () -> BlkMain.inheritedListener(efd))
                            .errno());
            assertThrows(IllegalArgumentException.class, () -> BlkMain.inheritedListener(-1));
        } finally {
            Unistd.close(stream);
            Unistd.close(dgram);
            Unistd.close(efd);
        }
    }

    @Test
    void shouldExitTwoWithoutStartingWhenArgumentsAreWrong() {
        String socket = "--socket-path=" + dir.resolve("s.sock");
        String file = "--blk-file=" + dir.resolve("missing.img");
        assertEquals(2, execute("--blk-file=/x"), "neither --socket-path nor --fd");
        assertEquals(2, execute(socket, "--fd=3", "--blk-file=/x"), "both --socket-path and --fd");
        assertEquals(2, execute(socket), "no --blk-file");
        assertEquals(2, execute(socket, file), "a file that does not exist");
        assertFalse(Files.exists(dir.resolve("s.sock")));
        int efd = Eventfd.eventfd(0, Eventfd.EFD_CLOEXEC);
        try {
            assertEquals(2, execute("--fd=" + efd, "--blk-file=/x"), "an fd that is no socket");
        } finally {
            Unistd.close(efd);
        }
    }

    @Test
    void shouldPutRunDirUnderSystemdRuntimeDirectoryWhenSet() {
        assertEquals(
                Path.of("/run/vhostd-blk"),
                BlkMain.runtimeBase(Map.of("RUNTIME_DIRECTORY", "/run/vhostd-blk:/run/other")));
        assertEquals(dir, BlkMain.runtimeBase(Map.of("XDG_RUNTIME_DIR", dir.toString())));
        assertEquals(Path.of(System.getProperty("java.io.tmpdir")), BlkMain.runtimeBase(Map.of()));
    }

    private int execute(String... args) {
        PrintStream savedErr = System.err;
        try {
            System.setErr(new PrintStream(new ByteArrayOutputStream(), true, StandardCharsets.UTF_8));
            return new CommandLine(new BlkMain())
                    .setOut(new java.io.PrintWriter(new ByteArrayOutputStream()))
                    .setErr(new java.io.PrintWriter(new ByteArrayOutputStream()))
                    .execute(args);
        } finally {
            System.setErr(savedErr);
        }
    }
}
