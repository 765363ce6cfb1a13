package io.vhostd.master;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.master.bdev.NvmeProbe;
import io.vhostd.master.config.VhostdConfig;
import io.vhostd.master.hugepages.HugepagePool;
import io.vhostd.rpc.RpcClient;
import io.vhostd.rpc.RpcException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code slave_upgrade} (issue #4) on a master without a slave: the answers that need no slave process (the guest test
 * {@code SlaveUpgradeIT} covers the upgrade itself).
 */
@Timeout(120)
class SlaveUpgradeRpcTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private Master master;
    private RpcClient client;

    @BeforeEach
    void setUp() throws Exception {
        Path proc = dir.resolve("proc");
        Path sys = dir.resolve("sys");
        Files.createDirectories(proc.resolve("sys/vm"));
        Files.createDirectories(sys.resolve("kernel/mm/hugepages/hugepages-2048kB"));
        Files.writeString(proc.resolve("sys/vm/nr_hugepages"), "0\n");
        Files.writeString(sys.resolve("kernel/mm/hugepages/hugepages-2048kB/free_hugepages"), "0\n");
        VhostdConfig cfg = VhostdConfig.parse(("""
                        run_dir: $DIR/run
                        hugepages: {enabled: false}
                        bdevs:
                          - {name: n0, type: null, num_blocks: 64}
                        controllers:
                          - {name: vb0, type: vhost-user-blk, bdev: n0, socket: vb0.sock}
                        """).replace("$DIR", dir.toString()));
        master = new Master(
                cfg,
                new Master.Options(
                        false,
                        new NvmeProbe(sys, dir.resolve("dev")),
                        new HugepagePool(proc, sys, HugepagePool.KERNEL_FILES)));
        master.start();
        client = RpcClient.connect(Path.of(cfg.rpcSocket()), Duration.ofSeconds(30));
    }

    @AfterEach
    void tearDown() throws Exception {
        if (client != null) {
            client.close();
        }
        if (master != null) {
            master.close();
        }
    }

    private RpcException refused(String params) {
        return assertThrows(
                RpcException.class,
                () -> client.call("slave_upgrade", JSON.readTree(params.replace("$DIR", dir.toString()))));
    }

    @Test
    void shouldAnswerInvalidParamsWhenJarIsNotAFile() {
        RpcException e = refused("{\"jar\":\"$DIR/missing.jar\"}");
        assertEquals("invalid_params", e.error().name(), e.error().toString());
        assertTrue(e.error().message().contains("missing.jar"), e.error().message());
        assertEquals("invalid_params", refused("{\"jar\":\"\"}").error().name());
    }

    @Test
    void shouldAnswerNotSupportedWhenMasterRunsNoSlave() {
        assertEquals("not_supported", refused("{}").error().name());
    }
}
