package io.vhostd.rpc.cli;

import com.fasterxml.jackson.databind.JsonNode;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * {@code vhostctl smart-log BDEV} in nvme-cli's {@code nvme smart-log} layout, from a {@code
 * bdev_nvme_get_controller_health_info} result: the line {@code Smart Log for NVME device:NAME namespace-id:ffffffff},
 * then {@code key : value} lines with the keys nvme-cli prints, each key left-aligned in 40 columns (the width of its
 * longest key, "endurance group critical warning summary"). Numbers are printed without thousands separators
 * (nvme-cli in the C locale); data units as nvme-cli does, {@code N (X.XX MB)} with one unit = 512 000 bytes (NVMe
 * 2.0 Figure 207).
 *
 * <p>A field the daemon could not give honestly (JSON null) prints {@code n/a}. When the result's {@code source} is
 * {@code derived} (a bdev that is not an NVMe namespace, or whose log page could not be read), a last line names the
 * fields vhostd derived from its own counters rather than read from a device: {@code # derived by vhostd: ...}.
 */
public final class SmartLogFormat {
    private SmartLogFormat() {}

    /** Width of the key column. */
    static final int KEY_WIDTH = 40;

    private static final String[] SI = {"", "k", "M", "G", "T", "P", "E", "Z", "Y"};

    /** The report, each line ending in a newline. */
    public static String format(JsonNode health) {
        List<String[]> rows = new ArrayList<>();
        rows.add(row("critical_warning", hex(health.get("critical_warning"))));
        rows.add(row("temperature", temperature(health.get("temperature_celsius"))));
        rows.add(row("available_spare", percent(health.get("available_spare_percentage"))));
        rows.add(row("available_spare_threshold", percent(health.get("available_spare_threshold_percentage"))));
        rows.add(row("percentage_used", percent(health.get("percentage_used"))));
        rows.add(row("endurance group critical warning summary", "n/a"));
        rows.add(row("Data Units Read", dataUnits(health.get("data_units_read"))));
        rows.add(row("Data Units Written", dataUnits(health.get("data_units_written"))));
        for (String key : new String[] {
            "host_read_commands",
            "host_write_commands",
            "controller_busy_time",
            "power_cycles",
            "power_on_hours",
            "unsafe_shutdowns",
            "media_errors",
            "num_err_log_entries"
        }) {
            rows.add(row(key, number(health.get(key))));
        }
        rows.add(row("Warning Temperature Time", number(health.get("warning_temperature_time_minutes"))));
        rows.add(row(
                "Critical Composite Temperature Time",
                number(health.get("critical_composite_temperature_time_minutes"))));
        StringBuilder out = new StringBuilder();
        out.append("Smart Log for NVME device:")
                .append(health.path("name").asText())
                .append(" namespace-id:ffffffff\n");
        for (String[] r : rows) {
            out.append(String.format(Locale.ROOT, "%-" + KEY_WIDTH + "s: %s%n", r[0], r[1]));
        }
        if ("derived".equals(health.path("source").asText())) {
            List<String> derived = new ArrayList<>();
            health.path("derived_fields").forEach(f -> derived.add(f.asText()));
            out.append("# derived by vhostd, not read from a device: ")
                    .append(derived.isEmpty() ? "-" : String.join(", ", derived))
                    .append('\n');
        }
        return out.toString().replace("\r\n", "\n");
    }

    private static String[] row(String key, String value) {
        return new String[] {key, value};
    }

    private static boolean absent(JsonNode v) {
        return v == null || v.isNull() || v.isMissingNode();
    }

    /** nvme-cli prints critical_warning with {@code %#x}: {@code 0}, {@code 0x4}. */
    static String hex(JsonNode v) {
        if (absent(v)) {
            return "n/a";
        }
        long value = v.asLong();
        return value == 0 ? "0" : "0x" + Long.toHexString(value);
    }

    /** {@code 33 °C (306 K)}: the log page holds kelvin; Celsius = K − 273 as nvme-cli computes it. */
    static String temperature(JsonNode celsius) {
        if (absent(celsius)) {
            return "n/a";
        }
        long c = celsius.asLong();
        return c + " °C (" + (c + 273) + " K)";
    }

    static String percent(JsonNode v) {
        return absent(v) ? "n/a" : v.asLong() + "%";
    }

    static String number(JsonNode v) {
        return absent(v) ? "n/a" : v.bigIntegerValue().toString();
    }

    /** {@code 1234 (631.81 MB)}: nvme-cli's count, then its SI size (units of 1000 × 512 bytes). */
    static String dataUnits(JsonNode v) {
        if (absent(v)) {
            return "n/a";
        }
        BigInteger units = v.bigIntegerValue();
        double bytes = units.doubleValue() * 512_000.0;
        int i = 0;
        while (bytes >= 1000 && i < SI.length - 1) {
            bytes /= 1000;
            i++;
        }
        return units + String.format(Locale.ROOT, " (%.2f %sB)", bytes, SI[i]);
    }
}
