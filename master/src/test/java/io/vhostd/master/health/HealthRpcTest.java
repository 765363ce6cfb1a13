package io.vhostd.master.health;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.vhostd.master.Master;
import io.vhostd.master.bdev.FakeNvmeTree;
import io.vhostd.master.config.VhostdConfig;
import io.vhostd.master.hugepages.HugepagePool;
import io.vhostd.rpc.RpcClient;
import io.vhostd.rpc.RpcException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@code bdev_nvme_get_controller_health_info} and the Prometheus endpoint of a real in-process {@link Master} (no
 * slave) over its RPC socket and HTTP, on a fake sysfs whose NVMe "devices" are regular files (so the kernel's
 * pass-through is refused: the error path with its errno), good and bad input.
 */
@Timeout(120)
class HealthRpcTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    private Master master;
    private RpcClient client;

    @BeforeEach
    void setUp() throws Exception {
        FakeNvmeTree nvme = new FakeNvmeTree(dir.resolve("hw"));
        Path c0 = nvme.controller("nvme0", "Fake NVMe 0", "SN0", "FW0", "pcie", "0000:01:00.0");
        nvme.namespace(c0, "nvme0n1", "nvme0n1", 1, 1L << 20, 512);
        // the controller's "character device" is a regular file: open works, NVME_IOCTL_ADMIN_CMD says ENOTTY
        Files.write(nvme.devRoot().resolve("nvme0"), new byte[0]);
        Path proc = dir.resolve("hw").resolve("proc");
        Path sys = nvme.sysRoot();
        Files.createDirectories(proc.resolve("sys/vm"));
        Files.createDirectories(sys.resolve("kernel/mm/hugepages/hugepages-2048kB"));
        Files.writeString(proc.resolve("sys/vm/nr_hugepages"), "1\n");
        Files.writeString(sys.resolve("kernel/mm/hugepages/hugepages-2048kB/free_hugepages"), "0\n");
        Files.write(dir.resolve("disk0.img"), new byte[1 << 20]);
        String yaml = """
                run_dir: $DIR/run
                hugepages: {enabled: false}
                bdevs:
                  - {name: disk0, type: file, path: $DIR/disk0.img}
                  - {name: nv, type: nvme, traddr: "0000:01:00.0"}
                controllers:
                  - {name: vhost-blk0, type: vhost-user-blk, bdev: disk0, socket: vb0.sock}
                prometheus: {listen: "127.0.0.1:0"}
                """.replace("$DIR", dir.toString());
        VhostdConfig cfg = VhostdConfig.parse(yaml);
        master = new Master(
                cfg, new Master.Options(false, nvme.probe(), new HugepagePool(proc, sys, HugepagePool.KERNEL_FILES)));
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

    private JsonNode call(String params) throws Exception {
        return client.call(HealthService.METHOD, params == null ? null : JSON.readTree(params));
    }

    @Test
    void shouldDeriveHealthWhenBdevIsAFile() throws Exception {
        JsonNode o = call("{\"name\":\"disk0\"}");
        assertEquals("disk0", o.path("name").asText());
        assertEquals("derived", o.path("source").asText());
        assertEquals(7, o.path("derived_fields").size());
        assertEquals(0, o.path("data_units_read").asLong());
        assertTrue(o.path("power_on_hours").isIntegralNumber());
        assertTrue(o.path("temperature_celsius").isNull());
        assertTrue(o.path("model_number").isNull());
    }

    @Test
    void shouldAnswerNamedErrorsWhenInputIsBad() {
        RpcException unknown = assertThrows(RpcException.class, () -> call("{\"name\":\"nope\"}"));
        assertEquals("no_such_bdev", unknown.error().name());
        RpcException missing = assertThrows(RpcException.class, () -> call("{}"));
        assertEquals("invalid_params", missing.error().name());
        RpcException wrongType = assertThrows(RpcException.class, () -> call("{\"name\":5}"));
        assertEquals("invalid_params", wrongType.error().name());
        RpcException empty = assertThrows(RpcException.class, () -> call("{\"name\":\"\"}"));
        assertEquals("invalid_params", empty.error().name());
        RpcException extra = assertThrows(RpcException.class, () -> call("{\"name\":\"disk0\",\"x\":1}"));
        assertEquals("invalid_params", extra.error().name());
    }

    @Test
    void shouldAnswerDeviceErrorWithErrnoWhenPassThroughIsRefused() {
        for (String name : new String[] {"nvn1", "nv", "nvme0"}) {
            RpcException e = assertThrows(RpcException.class, () -> call("{\"name\":\"" + name + "\"}"));
            assertEquals("device_error", e.error().name(), name);
            assertEquals("ENOTTY", e.error().data().path("errno_name").asText());
            assertEquals(25, e.error().data().path("errno").asInt());
            assertTrue(
                    e.error().message().contains("NVME_IOCTL_ADMIN_CMD"),
                    e.error().message());
        }
    }

    @Test
    void shouldServePrometheusWhenConfigured() throws Exception {
        assertNotNull(master.metrics());
        try (HttpClient http = HttpClient.newHttpClient()) {
            HttpResponse<String> r = http.send(
                    HttpRequest.newBuilder(URI.create(
                                    "http://127.0.0.1:" + master.metrics().port() + "/metrics"))
                            .timeout(Duration.ofSeconds(30))
                            .build(),
                    HttpResponse.BodyHandlers.ofString());
            assertEquals(200, r.statusCode());
            assertTrue(r.body().contains("\njvm_memory_used_bytes{"), r.body());
            assertTrue(r.body().contains("\nprocess_uptime_seconds "), r.body());
        }
    }

    @Test
    void shouldNotListenWhenPrometheusIsAbsent() throws Exception {
        client.close();
        client = null;
        master.close();
        Path run2 = dir.resolve("run2");
        VhostdConfig cfg = VhostdConfig.parse("run_dir: " + run2 + "\nhugepages: {enabled: false}\n");
        master = new Master(cfg, new Master.Options(false, new FakeNvmeTree(dir.resolve("hw2")).probe(), null));
        master.start();
        assertNull(master.metrics());
    }
}
