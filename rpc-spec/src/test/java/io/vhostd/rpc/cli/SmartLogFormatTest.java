package io.vhostd.rpc.cli;

import static org.junit.jupiter.api.Assertions.assertEquals;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

@Timeout(10)
class SmartLogFormatTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void shouldPrintNvmeCliLayoutWhenReadFromLogPage() throws Exception {
        String health = """
                {"name":"nvme0n1","source":"nvme_log_page","derived_fields":[],"model_number":"QEMU NVMe Ctrl",
                 "serial_number":"deadbeef","firmware_revision":"9.1.0","critical_warning":0,
                 "temperature_celsius":50,"available_spare_percentage":100,
                 "available_spare_threshold_percentage":10,"percentage_used":0,"data_units_read":1234,
                 "data_units_written":5678901,"host_read_commands":99999,"host_write_commands":12,
                 "controller_busy_time":0,"power_cycles":1,"power_on_hours":2,"unsafe_shutdowns":0,
                 "media_errors":0,"num_err_log_entries":0,"warning_temperature_time_minutes":0,
                 "critical_composite_temperature_time_minutes":0}
                """;

        assertEquals("""
                Smart Log for NVME device:nvme0n1 namespace-id:ffffffff
                critical_warning                        : 0
                temperature                             : 50 °C (323 K)
                available_spare                         : 100%
                available_spare_threshold               : 10%
                percentage_used                         : 0%
                endurance group critical warning summary: n/a
                Data Units Read                         : 1234 (631.81 MB)
                Data Units Written                      : 5678901 (2.91 TB)
                host_read_commands                      : 99999
                host_write_commands                     : 12
                controller_busy_time                    : 0
                power_cycles                            : 1
                power_on_hours                          : 2
                unsafe_shutdowns                        : 0
                media_errors                            : 0
                num_err_log_entries                     : 0
                Warning Temperature Time                : 0
                Critical Composite Temperature Time     : 0
                """, SmartLogFormat.format(JSON.readTree(health)));
    }

    @Test
    void shouldMarkNullsAndDerivedFieldsWhenBdevIsNotNvme() throws Exception {
        String health = """
                {"name":"disk0","source":"derived","derived_fields":["data_units_read","media_errors"],
                 "critical_warning":4,"temperature_celsius":null,"data_units_read":0,"media_errors":3}
                """;

        String text = SmartLogFormat.format(JSON.readTree(health));

        String[] lines = text.split("\n");
        assertEquals("critical_warning                        : 0x4", lines[1]);
        assertEquals("temperature                             : n/a", lines[2]);
        assertEquals("Data Units Read                         : 0 (0.00 B)", lines[7]);
        assertEquals("media_errors                            : 3", lines[15]);
        assertEquals("# derived by vhostd, not read from a device: data_units_read, media_errors", lines[19]);
    }
}
