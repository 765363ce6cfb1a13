package io.vhostd.master.bdev;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

@Timeout(10)
class NvmeProbeTest {
    @TempDir
    Path dir;

    @Test
    void shouldFindControllersAndNamespacesWhenSysfsHasThem() throws IOException {
        FakeNvmeTree tree = new FakeNvmeTree(dir);
        Path nvme0 = tree.controller(
                "nvme0", "Samsung SSD 980 PRO 1TB", "S5GXNF0R123456", "5B2QGXA7", "pcie", "0000:01:00.0");
        tree.namespace(nvme0, "nvme0n2", "nvme0n2", 2, 8L << 20, 4096);
        tree.namespace(nvme0, "nvme0n1", "nvme0n1", 1, 4L << 20, 512);
        // native multipath: the controller lists a path disk nvme<subsys>c<ctrl>n<ns>; the disk is the head nvme1n1
        Path nvme10 =
                tree.controller("nvme10", "QEMU NVMe Ctrl", "deadbeef", "1.0", "tcp", "traddr=127.0.0.1,trsvcid=4420");
        tree.namespace(nvme10, "nvme1c10n1", "nvme1n1", 1, 2L << 20, 512);
        Path nvme2 = tree.controller("nvme2", "Empty", "E1", "1", "pcie", "0000:02:00.0");
        // not namespaces: attributes and links the kernel also puts there
        Files.createDirectories(nvme2.resolve("power"));
        Files.createDirectories(nvme2.resolve("hwmon0"));

        List<NvmeProbe.NvmeController> found = tree.probe().controllers();

        assertEquals(
                List.of("nvme0", "nvme2", "nvme10"),
                found.stream().map(NvmeProbe.NvmeController::name).toList());
        NvmeProbe.NvmeController c0 = found.get(0);
        assertEquals("Samsung SSD 980 PRO 1TB", c0.model(), "blank padding trimmed");
        assertEquals("S5GXNF0R123456", c0.serial());
        assertEquals("5B2QGXA7", c0.firmwareRev());
        assertEquals("pcie", c0.transport());
        assertEquals("0000:01:00.0", c0.traddr());
        assertEquals(
                List.of(
                        new NvmeProbe.NvmeNamespace(
                                1, "nvme0n1", tree.devRoot().resolve("nvme0n1").toString(), 4L << 20, 512),
                        new NvmeProbe.NvmeNamespace(
                                2, "nvme0n2", tree.devRoot().resolve("nvme0n2").toString(), 8L << 20, 4096)),
                c0.namespaces());
        assertEquals(List.of(), found.get(1).namespaces());
        assertEquals("nvme1n1", found.get(2).namespaces().get(0).blockDeviceName());
    }

    @Test
    void shouldFindControllerByNameOrAddressWhenAsked() throws IOException {
        FakeNvmeTree tree = new FakeNvmeTree(dir);
        tree.controller("nvme0", "M", "S", "F", "pcie", "0000:01:00.0");
        tree.controller("nvme1", "M", "S", "F", "pcie", "0000:81:00.0");
        NvmeProbe probe = tree.probe();

        assertEquals("nvme1", probe.byTraddr("0000:81:00.0").orElseThrow().name());
        assertEquals("nvme1", probe.byTraddr("0000:81:00.0 ").orElseThrow().name());
        assertEquals("nvme0", probe.byDevice("/dev/nvme0").orElseThrow().name());
        assertEquals("nvme0", probe.byDevice("nvme0").orElseThrow().name());
        assertTrue(probe.byDevice("nvme7").isEmpty());
        assertTrue(probe.byTraddr("0000:99:00.0").isEmpty());
    }

    @Test
    void shouldFindNothingWhenHostHasNoNvme() throws IOException {
        assertEquals(List.of(), new NvmeProbe(dir.resolve("no-sys"), dir.resolve("no-dev")).controllers());
    }

    @Test
    void shouldSayWhichFileWhenAnAttributeIsNotANumber() throws IOException {
        FakeNvmeTree tree = new FakeNvmeTree(dir);
        Path nvme0 = tree.controller("nvme0", "M", "S", "F", "pcie", "0000:01:00.0");
        tree.namespace(nvme0, "nvme0n1", "nvme0n1", 1, 1L << 20, 512);
        Files.writeString(nvme0.resolve("nvme0n1").resolve("size"), "lots\n");
        IOException e = assertThrows(IOException.class, () -> tree.probe().controllers());
        assertTrue(e.getMessage().contains("nvme0n1/size"), e.getMessage());
    }
}
