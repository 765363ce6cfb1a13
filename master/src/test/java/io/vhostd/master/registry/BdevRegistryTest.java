package io.vhostd.master.registry;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.vhostd.master.bdev.FakeNvmeTree;
import io.vhostd.master.config.BdevConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(60)
class BdevRegistryTest {
    @TempDir
    Path dir;

    private FakeNvmeTree nvme;
    private PersistentRegistry store;
    private BdevRegistry registry;

    @BeforeEach
    void setUp() throws IOException {
        nvme = new FakeNvmeTree(dir.resolve("nvme"));
        Path c = nvme.controller("nvme0", "Fake NVMe", "SN0", "FW1", "pcie", "0000:01:00.0");
        nvme.namespace(c, "nvme0n1", "nvme0n1", 1, 1L << 20, 512);
        nvme.namespace(c, "nvme0n2", "nvme0n2", 2, 2L << 20, 4096);
        store = PersistentRegistry.open(dir.resolve("registry.dat"));
        registry = new BdevRegistry(16, nvme.probe(), store);
    }

    @AfterEach
    void tearDown() {
        registry.close();
        store.close();
    }

    /** Closes the registry and its file, as a stopping master does, and opens both again. */
    private void restart() throws IOException {
        registry.close();
        store.close();
        store = PersistentRegistry.open(dir.resolve("registry.dat"));
        registry = new BdevRegistry(16, nvme.probe(), store);
    }

    private BdevConfig file(String name, String fileName) {
        return new BdevConfig(name, "file", dir.resolve(fileName).toString(), 1L << 20, false, false, 512);
    }

    private static BdevConfig memory(String name, String type) {
        return new BdevConfig(name, type, null, 1L << 20, false, false, 4096);
    }

    private static BdevConfig nvme(String name, String traddr) {
        return new BdevConfig(name, "nvme", null, 0, false, false, 512, null, traddr);
    }

    private List<String> names() {
        return registry.list().stream().map(e -> e.bdev().name()).toList();
    }

    private static BdevException.Reason reasonOf(ThrowingRunnable r) {
        return assertThrows(BdevException.class, r::run).reason();
    }

    @FunctionalInterface
    private interface ThrowingRunnable {
        void run() throws Exception;
    }

    @Test
    void shouldOpenEveryTypeWithItsEngineWhenCreated() throws Exception {
        registry.create(file("f", "f.img"), true);
        registry.create(memory("z", "null"), true);
        registry.create(memory("m", "malloc"), true);
        List<BdevRegistry.Entry> ns = registry.create(nvme("nv", "0000:01:00.0"), true);

        assertEquals(List.of("f", "z", "m", "nvn1", "nvn2"), names());
        assertEquals(List.of(1, 2), ns.stream().map(BdevRegistry.Entry::nsid).toList());
        BdevRegistry.Entry n2 = registry.get("nvn2").orElseThrow();
        assertEquals("nvme", n2.bdev().type());
        assertEquals("nv", n2.bdev().nvmeController());
        assertEquals(2L << 20, n2.bdev().sizeBytes());
        assertEquals(4096, n2.bdev().blockSizeBytes());
        assertEquals(nvme.devRoot().resolve("nvme0n2").toString(), n2.bdev().path());
        assertEquals("memory", registry.get("z").orElseThrow().engine().kind());
        assertEquals("memory", registry.get("m").orElseThrow().engine().kind());
        assertTrue(registry.get("f").orElseThrow().persistent());
        assertEquals(5, store.bdevs().size());
        List<BdevRegistry.ProbedController> probed = registry.probeNvme();
        assertEquals("nv", probed.get(0).attachedAs());
    }

    @Test
    void shouldRefuseNameOrFileTakenWhenCreating() throws Exception {
        registry.create(file("f", "f.img"), false);

        assertEquals(BdevException.Reason.NAME_IN_USE, reasonOf(() -> registry.create(memory("f", "null"), true)));
        assertEquals(BdevException.Reason.BUSY, reasonOf(() -> registry.create(file("g", "f.img"), true)));
        registry.create(nvme("nv", "0000:01:00.0"), false);
        assertEquals(
                BdevException.Reason.BUSY,
                reasonOf(() -> registry.create(nvme("other", "0000:01:00.0"), false)),
                "the namespaces are open already");
        assertEquals(
                BdevException.Reason.NO_SUCH_DEVICE, reasonOf(() -> registry.create(nvme("x", "0000:09:00.0"), false)));
        assertEquals(List.of("f", "nvn1", "nvn2"), names());
        assertEquals(0, store.bdevs().size(), "nothing recorded: all were config bdevs or failed");
    }

    @Test
    void shouldOpenNoNamespaceWhenOneFails() throws Exception {
        Files.delete(nvme.devRoot().resolve("nvme0n2"));

        BdevException e = assertThrows(BdevException.class, () -> registry.create(nvme("nv", "0000:01:00.0"), true));

        assertEquals(BdevException.Reason.NO_SUCH_DEVICE, e.reason(), e.getMessage());
        assertEquals(List.of(), names());
        assertEquals(0, store.bdevs().size());
    }

    @Test
    void shouldRefuseDeleteWhenControllerClaimsBdev() throws Exception {
        registry.create(memory("m", "malloc"), true);
        registry.claim("m", "vhost-blk0");

        assertEquals(BdevException.Reason.BUSY, reasonOf(() -> registry.delete("m")));
        assertEquals(BdevException.Reason.BUSY, reasonOf(() -> registry.claim("m", "vhost-blk1")));
        assertEquals("vhost-blk0", registry.claimedBy("m").orElseThrow());
        registry.release("m", "vhost-blk0");

        assertTrue(registry.delete("m"));
        assertEquals(BdevException.Reason.NO_SUCH_BDEV, reasonOf(() -> registry.delete("m")));
        assertEquals(BdevException.Reason.NO_SUCH_BDEV, reasonOf(() -> registry.claim("m", "vhost-blk0")));
        assertEquals(0, store.bdevs().size());
    }

    @Test
    void shouldRecreateRecordedBdevsAndLetConfigWinWhenRestarted() throws Exception {
        registry.create(file("f", "f.img"), true);
        registry.create(memory("z", "null"), true);
        registry.create(memory("m", "malloc"), true);
        registry.create(nvme("nv", "0000:01:00.0"), true);
        registry.create(memory("cfg", "null"), false);
        registry.delete("nvn1");

        restart();
        // the configuration declares "z" as well (created before restore, as the master does): it wins
        registry.create(new BdevConfig("z", "malloc", null, 8192, false, false, 512), false);
        List<String> restored = registry.restore();

        assertEquals(List.of("f", "m", "nvn2"), restored);
        assertEquals(List.of("z", "f", "m", "nvn2"), names());
        assertEquals("malloc", registry.get("z").orElseThrow().bdev().type(), "the configured z");
        assertFalse(registry.get("z").orElseThrow().persistent());
        assertTrue(registry.get("nvn2").orElseThrow().persistent());
        assertEquals(2, registry.get("nvn2").orElseThrow().nsid());
        assertEquals(4, store.bdevs().size(), "the recorded z stays recorded");
        assertTrue(registry.get("cfg").isEmpty(), "a configured bdev is not recorded");
    }

    @Test
    void shouldKeepRecordWhenDeviceIsGoneUntilDeleted() throws Exception {
        registry.create(file("f", "f.img"), true);
        restart();
        Files.delete(dir.resolve("f.img"));

        assertEquals(List.of(), registry.restore(), "the image is gone");

        assertEquals(1, store.bdevs().size());
        assertFalse(registry.delete("f"), "only the record was removed");
        assertEquals(0, store.bdevs().size());
        assertEquals(BdevException.Reason.NO_SUCH_BDEV, reasonOf(() -> registry.delete("f")));
    }

    @Test
    void shouldRevalidateRecordsWhenRestoring() throws Exception {
        store.putBdev(
                "bad",
                new com.fasterxml.jackson.databind.ObjectMapper()
                        .createObjectNode()
                        .put("name", "bad")
                        .put("type", "malloc")
                        .put("num_blocks", -5));
        store.putBdev(
                "ok",
                new com.fasterxml.jackson.databind.ObjectMapper()
                        .createObjectNode()
                        .put("name", "ok")
                        .put("type", "null")
                        .put("num_blocks", 8)
                        .put("block_size", 512));

        assertEquals(List.of("ok"), registry.restore());
        assertNull(registry.get("bad").orElse(null));
    }
}
