package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.master.bdev.NvmeProbe;
import io.vhostd.master.config.VhostdConfig;
import io.vhostd.master.hugepages.HugepagePool;
import io.vhostd.shm.linux.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * The master's additions for systemd and the back-end program conventions: {@link Master#healthProblem} (what the
 * watchdog follows) and a controller on an inherited listening socket ({@code --fd}). In-process, no slave.
 */
@Timeout(120)
class MasterHealthTest {
    @TempDir
    Path dir;

    private VhostdConfig config(String socket) throws Exception {
        Files.write(dir.resolve("disk.img"), new byte[1 << 20]);
        return VhostdConfig.parse("""
                run_dir: $DIR/run
                hugepages: {enabled: false}
                bdevs:
                  - {name: disk0, type: file, path: $DIR/disk.img}
                  - {name: null0, type: null, num_blocks: 64}
                controllers:
                  - {name: blk0, type: vhost-user-blk, bdev: disk0, socket: $SOCKET}
                """.replace("$DIR", dir.toString()).replace("$SOCKET", socket));
    }

    private static Master.Options noSlave() {
        return new Master.Options(false, new NvmeProbe(), new HugepagePool());
    }

    @Test
    void shouldBeHealthyWhenEveryEngineRuns() throws Exception {
        try (Master master = new Master(config(dir.resolve("blk0.sock").toString()), noSlave())) {
            master.start();
            assertNull(master.healthProblem());
            assertTrue(master.readySummary().startsWith("1 controller(s), no slave, rpc "), master.readySummary());
        }
    }

    @Test
    void shouldNameEngineWhenItsThreadIsGone() throws Exception {
        try (Master master = new Master(config(dir.resolve("blk0.sock").toString()), noSlave())) {
            master.start();
            // stands for an engine thread that died: the bdev is still registered, its thread is not running
            master.bdevs().get("null0").orElseThrow().engine().close();
            assertEquals("engine of bdev null0 is not running (no thread engine-null0)", master.healthProblem());
        }
    }

    @Test
    void shouldServeInheritedListenerAndLeaveItsPathWhenGivenListenFd() throws Exception {
        Path socket = dir.resolve("bound-by-libvirt.sock");
        int fd = Socket.socket(Socket.AF_UNIX, Socket.SOCK_STREAM | Socket.SOCK_CLOEXEC, 0);
        Socket.bind(fd, socket.toString());
        Socket.listen(fd, 4);
        // a path that is served (by fd) would make listen() refuse to start: the inherited fd must be used instead
        Master master = new Master(config(socket.toString()), noSlave().withListenFds(Map.of("blk0", fd)));
        try {
            master.start();
            assertNull(master.healthProblem());
        } finally {
            master.shutdown("test");
        }
        assertTrue(Files.exists(socket), "an inherited socket's path belongs to whoever bound it");
        assertEquals(Map.of(), noSlave().listenFds());
    }
}
