package io.vhostd.master.health;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.JsonNodeFactory;
import com.fasterxml.jackson.databind.node.ObjectNode;
import io.vhostd.master.bdev.Bdev;
import io.vhostd.master.bdev.NvmeProbe;
import io.vhostd.master.config.BdevConfig;
import io.vhostd.master.registry.BdevRegistry;
import io.vhostd.rpc.RpcError;
import io.vhostd.rpc.RpcErrorCode;
import io.vhostd.rpc.RpcException;
import io.vhostd.shm.linux.Errno;
import io.vhostd.shm.linux.ErrnoException;
import io.vhostd.shm.linux.Fcntl;
import io.vhostd.shm.linux.NvmeIoctl;
import io.vhostd.shm.linux.Unistd;
import io.vhostd.shm.stats.IoCounters;
import java.io.IOException;
import java.math.BigInteger;
import java.nio.file.Path;
import java.time.Clock;
import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.function.Supplier;

/**
 * {@code bdev_nvme_get_controller_health_info}: the SMART / health information of an NVMe controller or of any bdev.
 *
 * <p><b>NVMe</b> ({@code source: "nvme_log_page"}): for an {@code nvme} bdev, the name it was attached under, or a
 * kernel controller name ({@code nvme0}), the master opens the controller's character device ({@code /dev/nvmeX},
 * read-only) and sends Get Log Page LID 02h (NSID FFFFFFFFh) and Identify CNS 01h through {@code
 * NVME_IOCTL_ADMIN_CMD}; every field is read from the device ({@link SmartHealthLog}, {@link IdentifyController}) and
 * {@code derived_fields} is empty. The counters are the controller's, over its whole life, not one namespace's.
 *
 * <p><b>Any other bdev</b> ({@code source: "derived"}): only what the daemon's own counters ({@code StatsService}'s
 * per-bdev totals since the master started) say honestly, listed in {@code derived_fields}:
 *
 * <ul>
 *   <li>{@code data_units_read} / {@code data_units_written} = ⌈bytes read / written ÷ 512 000⌉ (NVMe's unit: 1000 ×
 *       512 bytes, rounded up); write-zeroes and discard bytes are not counted, as NVMe counts only data transferred
 *   <li>{@code host_read_commands} / {@code host_write_commands} = completed virtio-blk reads / writes
 *   <li>{@code controller_busy_time} = whole minutes with at least one request outstanding ({@code io_time_ticks}),
 *       which is NVMe's definition of busy time
 *   <li>{@code media_errors} = requests completed with a non-OK virtio-blk status ({@code io_errors})
 *   <li>{@code power_on_hours} = whole hours since the master process started (the start of the counters above)
 * </ul>
 *
 * Everything else (temperature, spare, wear, power cycles, unsafe shutdowns, error log entries, model / serial /
 * firmware) cannot be known for a file or a RAM disk and is JSON null.
 *
 * <p><b>Numbers.</b> The 128-bit counters of the log page are sent exact, as JSON integers of whatever size (a value
 * above 2^63−1 stays an exact integer, never a float and never clamped; clients that parse into 64-bit types must use a
 * big-integer type for these fields). Derived counters fit 64 bits.
 *
 * <p><b>Errors</b>: {@code no_such_bdev} when the name is neither a bdev nor a controller; {@code permission_denied}
 * when the kernel refuses the pass-through ({@code EACCES}/{@code EPERM}: Get Log Page needs {@code CAP_SYS_ADMIN});
 * {@code device_error} for any other failure (the device vanished, the controller completed the command with an
 * error, sysfs unreadable). Both carry {@code data.errno} and {@code data.errno_name} when a system call failed.
 */
public final class HealthService {
    /** The RPC method this class serves. */
    public static final String METHOD = "bdev_nvme_get_controller_health_info";

    /** {@code source} of a result read from the device. */
    public static final String SOURCE_NVME_LOG_PAGE = "nvme_log_page";

    /** {@code source} of a result derived from the daemon's counters. */
    public static final String SOURCE_DERIVED = "derived";

    /** NVMe's data unit: 1000 units of 512 bytes. */
    public static final long DATA_UNIT_BYTES = 512_000;

    /** The fields a derived result fills, in result order. */
    public static final List<String> DERIVED_FIELDS = List.of(
            "data_units_read",
            "data_units_written",
            "host_read_commands",
            "host_write_commands",
            "controller_busy_time",
            "power_on_hours",
            "media_errors");

    private static final JsonNodeFactory NODES = JsonNodeFactory.instance;
    private static final long NANOS_PER_MINUTE = 60_000_000_000L;

    /** Raw admin commands against an NVMe controller's character device; replaced in tests. */
    public interface NvmeAdmin {
        /**
         * The 512-byte SMART / Health Information log page.
         *
         * @throws ErrnoException when the device cannot be opened or the command fails
         */
        byte[] smartLog(Path controllerDevice);

        /** The 4096-byte Identify Controller data structure; errors as {@link #smartLog}. */
        byte[] identifyController(Path controllerDevice);
    }

    /** The kernel's pass-through ({@link NvmeIoctl}) on {@code open(path, O_RDONLY)}. */
    public static final NvmeAdmin KERNEL = new NvmeAdmin() {
        @Override
        public byte[] smartLog(Path controllerDevice) {
            int fd = Fcntl.open(controllerDevice.toString(), Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, 0);
            try {
                return NvmeIoctl.getSmartLog(fd);
            } finally {
                Unistd.close(fd);
            }
        }

        @Override
        public byte[] identifyController(Path controllerDevice) {
            int fd = Fcntl.open(controllerDevice.toString(), Fcntl.O_RDONLY | Fcntl.O_CLOEXEC, 0);
            try {
                return NvmeIoctl.identifyController(fd);
            } finally {
                Unistd.close(fd);
            }
        }
    };

    private final BdevRegistry bdevs;
    private final Supplier<Map<String, IoCounters>> bdevTotals;
    private final Instant countersSince;
    private final Clock clock;
    private final NvmeAdmin admin;
    private final Path defaultDevRoot;

    /**
     * The service of a running master: the kernel's pass-through, the JVM's start as the counters' start.
     *
     * @param bdevs the master's bdevs (for names, types and the NVMe probe)
     * @param bdevTotals {@code StatsService::bdevTotals}: per-bdev counters since the master started
     */
    public HealthService(BdevRegistry bdevs, Supplier<Map<String, IoCounters>> bdevTotals) {
        this(
                bdevs,
                bdevTotals,
                ProcessHandle.current().info().startInstant().orElseGet(Instant::now),
                Clock.systemUTC(),
                KERNEL);
    }

    /**
     * @param countersSince when the counters of {@code bdevTotals} started (power-on time of derived results)
     * @param clock now, for the power-on time
     * @param admin the NVMe admin command path
     */
    public HealthService(
            BdevRegistry bdevs,
            Supplier<Map<String, IoCounters>> bdevTotals,
            Instant countersSince,
            Clock clock,
            NvmeAdmin admin) {
        this.bdevs = Objects.requireNonNull(bdevs, "bdevs");
        this.bdevTotals = Objects.requireNonNull(bdevTotals, "bdevTotals");
        this.countersSince = Objects.requireNonNull(countersSince, "countersSince");
        this.clock = Objects.requireNonNull(clock, "clock");
        this.admin = Objects.requireNonNull(admin, "admin");
        this.defaultDevRoot = Path.of(System.getProperty(NvmeProbe.DEV_ROOT_PROPERTY, "/dev"));
    }

    /** The RPC handler: params {@code {name}} (checked against openrpc.json by the server). */
    public JsonNode rpc(JsonNode params) throws RpcException {
        JsonNode name = params.get("name");
        if (name == null || !name.isTextual() || name.asText().isEmpty()) {
            throw new RpcException(RpcErrorCode.INVALID_PARAMS, "invalid params: name: a non-empty string is required");
        }
        return healthInfo(name.asText());
    }

    /**
     * The health information of {@code name}: a bdev first (an {@code nvme} bdev reads its controller), then the name
     * an NVMe controller was attached under, then a kernel controller name such as {@code nvme0}.
     *
     * @throws RpcException {@code no_such_bdev}, {@code permission_denied} or {@code device_error} (class Javadoc)
     */
    public ObjectNode healthInfo(String name) throws RpcException {
        Optional<BdevRegistry.Entry> entry = bdevs.get(name);
        if (entry.isPresent() && !entry.get().bdev().type().equals(BdevConfig.TYPE_NVME)) {
            return derived(name, totalsOf(name), Duration.between(countersSince, clock.instant()));
        }
        List<BdevRegistry.ProbedController> probed;
        try {
            probed = bdevs.probeNvme();
        } catch (IOException e) {
            throw new RpcException(RpcErrorCode.DEVICE_ERROR, "cannot probe NVMe controllers: " + e.getMessage());
        }
        NvmeProbe.NvmeController controller = entry.isPresent()
                ? controllerOf(entry.get().bdev(), probed)
                : probed.stream()
                        .filter(p -> name.equals(p.attachedAs()))
                        .map(BdevRegistry.ProbedController::controller)
                        .findFirst()
                        .or(() -> probed.stream()
                                .map(BdevRegistry.ProbedController::controller)
                                .filter(c -> c.name().equals(name))
                                .findFirst())
                        .orElse(null);
        if (controller == null) {
            if (entry.isPresent()) {
                throw new RpcException(RpcError.of(
                        RpcErrorCode.DEVICE_ERROR,
                        "nvme bdev '" + name + "': its controller is no longer in sysfs",
                        errnoData(Errno.ENODEV)));
            }
            throw new RpcException(RpcErrorCode.NO_SUCH_BDEV, "no bdev or NVMe controller named '" + name + "'");
        }
        Path device = controllerDevice(controller);
        try {
            SmartHealthLog log = SmartHealthLog.decode(admin.smartLog(device));
            IdentifyController id = IdentifyController.decode(admin.identifyController(device));
            return fromLogPage(name, log, id);
        } catch (ErrnoException e) {
            RpcErrorCode code = e.errno() == Errno.EACCES || e.errno() == Errno.EPERM
                    ? RpcErrorCode.PERMISSION_DENIED
                    : RpcErrorCode.DEVICE_ERROR;
            String hint =
                    code == RpcErrorCode.PERMISSION_DENIED ? " (the NVMe admin pass-through needs CAP_SYS_ADMIN)" : "";
            throw new RpcException(RpcError.of(code, device + ": " + e.getMessage() + hint, errnoData(e.errno())));
        } catch (IllegalArgumentException e) {
            throw new RpcException(RpcErrorCode.DEVICE_ERROR, device + ": " + e.getMessage());
        }
    }

    /** The result for a page read from a controller ({@code source: "nvme_log_page"}, nothing derived). */
    public static ObjectNode fromLogPage(String name, SmartHealthLog log, IdentifyController id) {
        ObjectNode o = NODES.objectNode();
        o.put("name", name);
        o.put("source", SOURCE_NVME_LOG_PAGE);
        o.putArray("derived_fields");
        o.put("model_number", id.modelNumber());
        o.put("serial_number", id.serialNumber());
        o.put("firmware_revision", id.firmwareRevision());
        o.put("critical_warning", log.criticalWarning());
        o.put("temperature_celsius", log.temperatureCelsius());
        o.put("available_spare_percentage", log.availableSparePercent());
        o.put("available_spare_threshold_percentage", log.availableSpareThresholdPercent());
        o.put("percentage_used", log.percentageUsed());
        o.put("data_units_read", log.dataUnitsRead());
        o.put("data_units_written", log.dataUnitsWritten());
        o.put("host_read_commands", log.hostReadCommands());
        o.put("host_write_commands", log.hostWriteCommands());
        o.put("controller_busy_time", log.controllerBusyTimeMinutes());
        o.put("power_cycles", log.powerCycles());
        o.put("power_on_hours", log.powerOnHours());
        o.put("unsafe_shutdowns", log.unsafeShutdowns());
        o.put("media_errors", log.mediaErrors());
        o.put("num_err_log_entries", log.numErrLogEntries());
        o.put("warning_temperature_time_minutes", log.warningCompositeTemperatureTimeMinutes());
        o.put("critical_composite_temperature_time_minutes", log.criticalCompositeTemperatureTimeMinutes());
        o.put("endurance_group_critical_warning_summary", log.enduranceGroupCriticalWarningSummary());
        ArrayNode sensors = o.putArray("temperature_sensors_celsius");
        for (int kelvin : log.temperatureSensorsKelvin()) {
            if (kelvin == 0) {
                // 0 K: the sensor is not implemented (Figure 207)
                sensors.addNull();
            } else {
                sensors.add(kelvin - SmartHealthLog.ZERO_CELSIUS_KELVIN);
            }
        }
        o.put("thermal_management_t1_trans_count", log.thermalManagementT1TransitionCount());
        o.put("thermal_management_t2_trans_count", log.thermalManagementT2TransitionCount());
        o.put("thermal_management_t1_total_time_seconds", log.thermalManagementT1TotalTimeSeconds());
        o.put("thermal_management_t2_total_time_seconds", log.thermalManagementT2TotalTimeSeconds());
        return o;
    }

    /**
     * The result derived from a bdev's counters ({@code source: "derived"}; class Javadoc).
     *
     * @param counters the bdev's counters since {@code sinceStart} ago
     * @param sinceStart how long the counters have run
     */
    public static ObjectNode derived(String name, IoCounters counters, Duration sinceStart) {
        ObjectNode o = NODES.objectNode();
        o.put("name", name);
        o.put("source", SOURCE_DERIVED);
        ArrayNode fields = o.putArray("derived_fields");
        DERIVED_FIELDS.forEach(fields::add);
        o.putNull("model_number");
        o.putNull("serial_number");
        o.putNull("firmware_revision");
        o.putNull("critical_warning");
        o.putNull("temperature_celsius");
        o.putNull("available_spare_percentage");
        o.putNull("available_spare_threshold_percentage");
        o.putNull("percentage_used");
        o.put("data_units_read", dataUnits(counters.bytesRead()));
        o.put("data_units_written", dataUnits(counters.bytesWritten()));
        o.put("host_read_commands", BigInteger.valueOf(counters.numReadOps()));
        o.put("host_write_commands", BigInteger.valueOf(counters.numWriteOps()));
        o.put("controller_busy_time", BigInteger.valueOf(Math.max(0, counters.ioTimeTicks()) / NANOS_PER_MINUTE));
        o.putNull("power_cycles");
        o.put("power_on_hours", BigInteger.valueOf(Math.max(0, sinceStart.toHours())));
        o.putNull("unsafe_shutdowns");
        o.put("media_errors", BigInteger.valueOf(counters.ioErrors()));
        o.putNull("num_err_log_entries");
        o.putNull("warning_temperature_time_minutes");
        o.putNull("critical_composite_temperature_time_minutes");
        o.putNull("endurance_group_critical_warning_summary");
        o.putNull("temperature_sensors_celsius");
        o.putNull("thermal_management_t1_trans_count");
        o.putNull("thermal_management_t2_trans_count");
        o.putNull("thermal_management_t1_total_time_seconds");
        o.putNull("thermal_management_t2_total_time_seconds");
        return o;
    }

    /** NVMe data units of {@code bytes}: ⌈bytes ÷ 512 000⌉ (§5.16.1.3: "rounded up"). */
    public static BigInteger dataUnits(long bytes) {
        return BigInteger.valueOf(Math.ceilDiv(Math.max(0, bytes), DATA_UNIT_BYTES));
    }

    private IoCounters totalsOf(String bdev) {
        // a bdev that never had a controller has done no I/O since the master started
        return bdevTotals.get().getOrDefault(bdev, IoCounters.ZERO);
    }

    /** The controller whose namespace {@code bdev} is (by device path, then by attach name). */
    private static NvmeProbe.NvmeController controllerOf(Bdev bdev, List<BdevRegistry.ProbedController> probed) {
        for (BdevRegistry.ProbedController p : probed) {
            if (p.controller().namespaces().stream()
                    .anyMatch(ns -> ns.devicePath().equals(bdev.path()))) {
                return p.controller();
            }
        }
        for (BdevRegistry.ProbedController p : probed) {
            if (bdev.nvmeController() != null && bdev.nvmeController().equals(p.attachedAs())) {
                return p.controller();
            }
        }
        return null;
    }

    /** {@code /dev/nvmeX}: next to its namespaces' device nodes, else under the probe's default device root. */
    private Path controllerDevice(NvmeProbe.NvmeController controller) {
        for (NvmeProbe.NvmeNamespace ns : controller.namespaces()) {
            Path parent = Path.of(ns.devicePath()).getParent();
            if (parent != null) {
                return parent.resolve(controller.name());
            }
        }
        return defaultDevRoot.resolve(controller.name());
    }

    private static ObjectNode errnoData(int errno) {
        ObjectNode data = NODES.objectNode();
        data.put("errno", errno);
        data.put("errno_name", Errno.name(errno));
        return data;
    }
}
