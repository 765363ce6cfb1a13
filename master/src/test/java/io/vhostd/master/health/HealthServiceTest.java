package io.vhostd.master.health;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.master.bdev.FakeNvmeTree;
import io.vhostd.master.config.VhostdConfig;
import io.vhostd.master.registry.BdevRegistry;
import io.vhostd.rpc.RpcErrorCode;
import io.vhostd.rpc.RpcException;
import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.stats.IoCounters;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.time.ZoneOffset;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.api.io.TempDir;

/**
 * {@link HealthService} on a fake sysfs (controller nvme0 attached as {@code nv}, nvme1 not attached) with the REAL
 * QEMU pages (src/test/resources/nvme) served by a fake admin path, and a file bdev whose counters are given.
 */
@Timeout(30)
class HealthServiceTest {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Instant START = Instant.parse("2026-11-20T08:00:00Z");

    @TempDir
    Path dir;

    private BdevRegistry bdevs;
    private final Map<String, IoCounters> totals = new ConcurrentHashMap<>();
    private final List<Path> asked = new ArrayList<>();
    private ErrnoException failWith;
    private HealthService service;

    @BeforeEach
    void setUp() throws Exception {
        FakeNvmeTree nvme = new FakeNvmeTree(dir.resolve("hw"));
        Path c0 = nvme.controller("nvme0", "QEMU NVMe Ctrl", "VHOSTD0001", "7.2.22", "pcie", "0000:01:00.0");
        nvme.namespace(c0, "nvme0n1", "nvme0n1", 1, 1L << 20, 512);
        nvme.controller("nvme1", "Other", "SN1", "FW1", "pcie", "0000:02:00.0");
        Files.write(dir.resolve("disk0.img"), new byte[1 << 20]);
        bdevs = new BdevRegistry(16, nvme.probe(), null);
        bdevs.create(
                VhostdConfig.parseBdev(
                        JSON.readTree("{\"name\":\"nv\",\"type\":\"nvme\",\"traddr\":\"0000:01:00.0\"}")),
                false);
        bdevs.create(
                VhostdConfig.parseBdev(JSON.readTree(
                        "{\"name\":\"disk0\",\"type\":\"file\",\"path\":\"" + dir.resolve("disk0.img") + "\"}")),
                false);
        HealthService.NvmeAdmin admin = new HealthService.NvmeAdmin() {
            @Override
            public byte[] smartLog(Path controllerDevice) {
                asked.add(controllerDevice);
                if (failWith != null) {
                    throw failWith;
                }
                return page("qemu-warn-smart-log.bin");
            }

            @Override
            public byte[] identifyController(Path controllerDevice) {
                return page("qemu-id-ctrl.bin");
            }
        };
        Clock clock = Clock.fixed(START.plus(Duration.ofMinutes(26 * 60 + 59)), ZoneOffset.UTC);
        service = new HealthService(bdevs, () -> Map.copyOf(totals), START, clock, admin);
    }

    @AfterEach
    void tearDown() {
        bdevs.close();
    }

    private static byte[] page(String name) {
        try {
            return SmartHealthLogTest.resource(name);
        } catch (IOException e) {
            throw new IllegalStateException(e);
        }
    }

    @Test
    void shouldReadLogPageWhenNameIsNvmeBdevAttachNameOrKernelName() throws Exception {
        for (String name : List.of("nvn1", "nv", "nvme0")) {
            ObjectNode o = service.healthInfo(name);
            assertEquals(name, o.path("name").asText());
            assertEquals("nvme_log_page", o.path("source").asText());
            assertEquals(0, o.path("derived_fields").size());
            assertEquals("QEMU NVMe Ctrl", o.path("model_number").asText());
            assertEquals("VHOSTD0001", o.path("serial_number").asText());
            assertEquals("7.2.22", o.path("firmware_revision").asText());
            assertEquals(5, o.path("critical_warning").asInt());
            assertEquals(50, o.path("temperature_celsius").asInt());
            assertEquals(17, o.path("data_units_written").asInt());
            assertEquals(64, o.path("host_write_commands").asInt());
            assertTrue(o.path("data_units_read").isIntegralNumber());
            assertTrue(o.path("temperature_sensors_celsius").get(0).isNull());
        }
        // the controller's character device, next to its namespaces' nodes
        assertEquals(dir.resolve("hw").resolve("dev").resolve("nvme0"), asked.get(0));
    }

    @Test
    void shouldSendEveryContractFieldWhenEitherSource() throws Exception {
        totals.put("disk0", IoCounters.ZERO);
        List<String> contract = List.of(
                "name",
                "source",
                "derived_fields",
                "model_number",
                "serial_number",
                "firmware_revision",
                "critical_warning",
                "temperature_celsius",
                "available_spare_percentage",
                "available_spare_threshold_percentage",
                "percentage_used",
                "data_units_read",
                "data_units_written",
                "host_read_commands",
                "host_write_commands",
                "controller_busy_time",
                "power_cycles",
                "power_on_hours",
                "unsafe_shutdowns",
                "media_errors",
                "num_err_log_entries",
                "warning_temperature_time_minutes",
                "critical_composite_temperature_time_minutes");
        for (String name : List.of("nv", "disk0")) {
            ObjectNode o = service.healthInfo(name);
            List<String> keys = new ArrayList<>();
            o.fieldNames().forEachRemaining(keys::add);
            assertEquals(contract, keys.subList(0, contract.size()), name);
        }
    }

    @Test
    void shouldDeriveHonestFieldsWhenBdevIsNotNvme() throws Exception {
        // 1 GB + 1 byte read -> 1954 data units (rounded up); 512000 bytes written -> exactly 1
        totals.put(
                "disk0",
                new IoCounters(
                        1000,
                        1_000_000_001L,
                        7,
                        512_000,
                        3,
                        0,
                        0,
                        2,
                        4096,
                        0,
                        0,
                        0,
                        0,
                        0,
                        4,
                        1,
                        (3 * 60 + 59) * 1_000_000_000L,
                        0));
        JsonNode o = service.healthInfo("disk0");
        assertEquals("derived", o.path("source").asText());
        assertEquals(
                JSON.readTree("[\"data_units_read\",\"data_units_written\",\"host_read_commands\","
                        + "\"host_write_commands\",\"controller_busy_time\",\"power_on_hours\",\"media_errors\"]"),
                o.path("derived_fields"));
        assertEquals(1954, o.path("data_units_read").asLong());
        assertEquals(1, o.path("data_units_written").asLong());
        assertEquals(1000, o.path("host_read_commands").asLong());
        assertEquals(7, o.path("host_write_commands").asLong());
        assertEquals(3, o.path("controller_busy_time").asLong()); // 3 min 59 s
        assertEquals(26, o.path("power_on_hours").asLong()); // 26 h 59 min
        assertEquals(4, o.path("media_errors").asLong());
        for (String unknown : List.of(
                "model_number",
                "serial_number",
                "firmware_revision",
                "critical_warning",
                "temperature_celsius",
                "available_spare_percentage",
                "available_spare_threshold_percentage",
                "percentage_used",
                "power_cycles",
                "unsafe_shutdowns",
                "num_err_log_entries",
                "warning_temperature_time_minutes",
                "critical_composite_temperature_time_minutes")) {
            assertTrue(o.path(unknown).isNull(), unknown);
        }
        assertTrue(asked.isEmpty(), "a file bdev never reaches the NVMe path");
    }

    @Test
    void shouldReportZeroIoWhenBdevHadNoController() throws Exception {
        JsonNode o = service.healthInfo("disk0");
        assertEquals(0, o.path("data_units_read").asLong());
        assertEquals(0, o.path("host_write_commands").asLong());
    }

    @Test
    void shouldAnswerNoSuchBdevWhenNameIsUnknown() {
        RpcException e = assertThrows(RpcException.class, () -> service.healthInfo("nope"));
        assertEquals(RpcErrorCode.NO_SUCH_BDEV.code(), e.error().code());
    }

    @Test
    void shouldAnswerPermissionDeniedWithErrnoWhenKernelRefuses() {
        failWith = new ErrnoException("NVME_IOCTL_ADMIN_CMD Get Log Page (LID 02h)", Errno.EACCES);
        RpcException e = assertThrows(RpcException.class, () -> service.healthInfo("nv"));
        assertEquals(RpcErrorCode.PERMISSION_DENIED.code(), e.error().code());
        assertEquals(Errno.EACCES, e.error().data().path("errno").asInt());
        assertEquals("EACCES", e.error().data().path("errno_name").asText());
        assertTrue(e.error().message().contains("CAP_SYS_ADMIN"), e.error().message());
    }

    @Test
    void shouldAnswerDeviceErrorWithErrnoWhenCommandFails() {
        failWith = new ErrnoException("NVME_IOCTL_ADMIN_CMD Get Log Page (LID 02h): NVMe status 0x4002", Errno.EIO);
        RpcException e = assertThrows(RpcException.class, () -> service.healthInfo("nvme0"));
        assertEquals(RpcErrorCode.DEVICE_ERROR.code(), e.error().code());
        assertEquals(Errno.EIO, e.error().data().path("errno").asInt());
        assertTrue(e.error().message().contains("NVMe status 0x4002"), e.error().message());
    }

    @Test
    void shouldAnswerDeviceErrorWhenKernelControllerHasNoNode() {
        // nvme1 exists in sysfs but has no /dev node in the fake tree: the real kernel path says ENOENT
        HealthService kernel = new HealthService(bdevs, Map::of, START, Clock.systemUTC(), HealthService.KERNEL);
        RpcException e = assertThrows(RpcException.class, () -> kernel.healthInfo("nvme1"));
        assertEquals(RpcErrorCode.DEVICE_ERROR.code(), e.error().code());
        assertEquals(Errno.ENOENT, e.error().data().path("errno").asInt());
    }

    @Test
    void shouldAnswerDeviceErrorWithEnottyWhenNodeIsNotNvme() {
        // the fake tree's nvme0n1 "device" is a regular file: the ioctl is refused with ENOTTY
        HealthService kernel =
                new HealthService(bdevs, Map::of, START, Clock.systemUTC(), new HealthService.NvmeAdmin() {
                    @Override
                    public byte[] smartLog(Path controllerDevice) {
                        return HealthService.KERNEL.smartLog(controllerDevice.resolveSibling("nvme0n1"));
                    }

                    @Override
                    public byte[] identifyController(Path controllerDevice) {
                        return HealthService.KERNEL.identifyController(controllerDevice.resolveSibling("nvme0n1"));
                    }
                });
        RpcException e = assertThrows(RpcException.class, () -> kernel.healthInfo("nv"));
        assertEquals(RpcErrorCode.DEVICE_ERROR.code(), e.error().code());
        assertEquals("ENOTTY", e.error().data().path("errno_name").asText());
    }

    @Test
    void shouldSendExactBigIntegersWhenCountersExceed64Bits() {
        byte[] page = new byte[512];
        page[SmartHealthLog.DATA_UNITS_WRITTEN_OFFSET + 15] = (byte) 0x80; // 2^127
        ObjectNode o =
                HealthService.fromLogPage("x", SmartHealthLog.decode(page), IdentifyController.decode(new byte[4096]));
        assertEquals(
                "170141183460469231731687303715884105728",
                o.path("data_units_written").toString());
        assertEquals(BigInteger.TWO.pow(127), o.path("data_units_written").bigIntegerValue());
    }
}
