package io.vhostd.master.health;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.InputStream;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The decoders against REAL pages: QEMU 7.2's emulated NVMe controller, dumped raw by nvme-cli 2.3 inside the test
 * guest (tests/vm/capture-nvme-logs.sh; {@code qemu-warn-*} with {@code smart_critical_warning=5}), and compared with
 * what nvme-cli printed in text form from the same page.
 */
@Timeout(10)
class SmartHealthLogTest {

    static byte[] resource(String name) throws IOException {
        try (InputStream in = SmartHealthLogTest.class.getResourceAsStream("/nvme/" + name)) {
            if (in == null) {
                throw new IOException("test resource /nvme/" + name + " missing");
            }
            return in.readAllBytes();
        }
    }

    /** nvme-cli's "key : value" lines ({@code nvme smart-log} / {@code nvme id-ctrl} text output). */
    static Map<String, String> nvmeCliText(String name) throws IOException {
        Map<String, String> out = new LinkedHashMap<>();
        Pattern line = Pattern.compile("^([^:]+?)\\s*:\\s?(.*)$");
        for (String l : new String(resource(name), StandardCharsets.UTF_8).split("\n")) {
            Matcher m = line.matcher(l);
            if (m.matches() && !l.startsWith("Smart Log for")) {
                out.putIfAbsent(m.group(1).strip(), m.group(2));
            }
        }
        return out;
    }

    /** The leading integer of a value like {@code "9 (4.61 MB)"}, {@code "0%"}, {@code "0x5"}. */
    private static BigInteger number(String value) {
        String v = value.strip();
        if (v.startsWith("0x")) {
            Matcher m = Pattern.compile("0x([0-9a-fA-F]+)").matcher(v);
            assertTrue(m.lookingAt(), v);
            return new BigInteger(m.group(1), 16);
        }
        Matcher m = Pattern.compile("[0-9,]+").matcher(v);
        assertTrue(m.lookingAt(), v);
        return new BigInteger(m.group().replace(",", ""));
    }

    @ParameterizedTest
    @ValueSource(strings = {"qemu", "qemu-warn"})
    void shouldMatchNvmeCliTextWhenDecodingCapturedSmartLog(String capture) throws IOException {
        SmartHealthLog log = SmartHealthLog.decode(resource(capture + "-smart-log.bin"));
        Map<String, String> text = nvmeCliText(capture + "-smart-log.txt");

        assertEquals(number(text.get("critical_warning")).intValue(), log.criticalWarning());
        Matcher temp = Pattern.compile("(-?[0-9]+)°C \\(([0-9]+) Kelvin\\)").matcher(text.get("temperature"));
        assertTrue(temp.matches(), text.get("temperature"));
        assertEquals(Integer.parseInt(temp.group(1)), log.temperatureCelsius());
        assertEquals(Integer.parseInt(temp.group(2)), log.compositeTemperatureKelvin());
        assertEquals(number(text.get("available_spare")).intValue(), log.availableSparePercent());
        assertEquals(number(text.get("available_spare_threshold")).intValue(), log.availableSpareThresholdPercent());
        assertEquals(number(text.get("percentage_used")).intValue(), log.percentageUsed());
        assertEquals(
                number(text.get("endurance group critical warning summary")).intValue(),
                log.enduranceGroupCriticalWarningSummary());
        assertEquals(number(text.get("Data Units Read")), log.dataUnitsRead());
        assertEquals(number(text.get("Data Units Written")), log.dataUnitsWritten());
        assertEquals(number(text.get("host_read_commands")), log.hostReadCommands());
        assertEquals(number(text.get("host_write_commands")), log.hostWriteCommands());
        assertEquals(number(text.get("controller_busy_time")), log.controllerBusyTimeMinutes());
        assertEquals(number(text.get("power_cycles")), log.powerCycles());
        assertEquals(number(text.get("power_on_hours")), log.powerOnHours());
        assertEquals(number(text.get("unsafe_shutdowns")), log.unsafeShutdowns());
        assertEquals(number(text.get("media_errors")), log.mediaErrors());
        assertEquals(number(text.get("num_err_log_entries")), log.numErrLogEntries());
        assertEquals(
                number(text.get("Warning Temperature Time")).longValue(), log.warningCompositeTemperatureTimeMinutes());
        assertEquals(
                number(text.get("Critical Composite Temperature Time")).longValue(),
                log.criticalCompositeTemperatureTimeMinutes());
        assertEquals(
                number(text.get("Thermal Management T1 Trans Count")).longValue(),
                log.thermalManagementT1TransitionCount());
        assertEquals(
                number(text.get("Thermal Management T2 Total Time")).longValue(),
                log.thermalManagementT2TotalTimeSeconds());
        // nvme-cli prints a "Temperature Sensor N" line only for implemented (non-zero) sensors
        for (int i = 0; i < SmartHealthLog.TEMPERATURE_SENSORS; i++) {
            assertEquals(
                    text.containsKey("Temperature Sensor " + (i + 1)),
                    log.temperatureSensorsKelvin().get(i) != 0,
                    "sensor " + (i + 1));
        }
    }

    @Test
    void shouldShowGuestIoWhenDecodingCapturedSmartLog() throws IOException {
        // the guest wrote 8 MiB and read 4 MiB (plus the kernel's partition scan) before the dump
        SmartHealthLog log = SmartHealthLog.decode(resource("qemu-smart-log.bin"));
        assertEquals(BigInteger.valueOf(17), log.dataUnitsWritten()); // ⌈16384 sectors / 1000⌉
        assertEquals(BigInteger.valueOf(64), log.hostWriteCommands()); // 8 MiB / 128 KiB
        assertEquals(BigInteger.valueOf(9), log.dataUnitsRead());
        assertEquals(BigInteger.valueOf(35), log.hostReadCommands());
        assertEquals(323, log.compositeTemperatureKelvin());
        assertEquals(50, log.temperatureCelsius());
        assertEquals(0, log.criticalWarning());
    }

    @Test
    void shouldDecodeCriticalWarningBitsWhenSet() throws IOException {
        SmartHealthLog log = SmartHealthLog.decode(resource("qemu-warn-smart-log.bin"));
        assertEquals(0x5, log.criticalWarning());
        assertTrue(log.criticalWarning(SmartHealthLog.AVAILABLE_SPARE_BIT));
        assertFalse(log.criticalWarning(SmartHealthLog.TEMPERATURE_BIT));
        assertTrue(log.criticalWarning(SmartHealthLog.RELIABILITY_BIT));
        assertFalse(log.criticalWarning(SmartHealthLog.READ_ONLY_BIT));
    }

    @Test
    void shouldKeep128BitCountersExactWhenAbove64Bits() {
        byte[] page = new byte[512];
        // data units read = 2^64 + 5, power on hours = 2^128 - 1
        page[SmartHealthLog.DATA_UNITS_READ_OFFSET] = 5;
        page[SmartHealthLog.DATA_UNITS_READ_OFFSET + 8] = 1;
        for (int i = 0; i < 16; i++) {
            page[SmartHealthLog.POWER_ON_HOURS_OFFSET + i] = (byte) 0xFF;
        }
        // composite temperature 0x0150 = 336 K little-endian, critical temperature time 0xFFFFFFFF
        page[1] = 0x50;
        page[2] = 0x01;
        for (int i = 0; i < 4; i++) {
            page[SmartHealthLog.CRITICAL_TEMPERATURE_TIME_OFFSET + i] = (byte) 0xFF;
        }
        page[SmartHealthLog.PERCENTAGE_USED_OFFSET] = (byte) 255;
        page[SmartHealthLog.TEMPERATURE_SENSOR_1_OFFSET + 2] = 0x2c; // sensor 2: 300 K
        page[SmartHealthLog.TEMPERATURE_SENSOR_1_OFFSET + 3] = 0x01;
        SmartHealthLog log = SmartHealthLog.decode(page);
        assertEquals(BigInteger.TWO.pow(64).add(BigInteger.valueOf(5)), log.dataUnitsRead());
        assertEquals(BigInteger.TWO.pow(128).subtract(BigInteger.ONE), log.powerOnHours());
        assertEquals(336, log.compositeTemperatureKelvin());
        assertEquals(63, log.temperatureCelsius());
        assertEquals(0xFFFFFFFFL, log.criticalCompositeTemperatureTimeMinutes());
        assertEquals(255, log.percentageUsed());
        assertEquals(Collections.nCopies(1, 0), log.temperatureSensorsKelvin().subList(0, 1));
        assertEquals(300, log.temperatureSensorsKelvin().get(1));
        assertEquals(BigInteger.ZERO, log.mediaErrors());
    }

    @ParameterizedTest
    @ValueSource(ints = {0, 1, 511, 513, 4096})
    void shouldRejectPageWhenNot512Bytes(int length) {
        IllegalArgumentException e =
                assertThrows(IllegalArgumentException.class, () -> SmartHealthLog.decode(new byte[length]));
        assertTrue(e.getMessage().contains("512 bytes, not " + length), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> SmartHealthLog.decode(null));
    }

    @Test
    void shouldMatchNvmeCliTextWhenDecodingCapturedIdentifyController() throws IOException {
        IdentifyController id = IdentifyController.decode(resource("qemu-id-ctrl.bin"));
        Map<String, String> text = nvmeCliText("qemu-id-ctrl.txt");
        assertEquals(text.get("sn").strip(), id.serialNumber());
        assertEquals(text.get("mn").strip(), id.modelNumber());
        assertEquals(text.get("fr").strip(), id.firmwareRevision());
        assertEquals(number(text.get("vid")).intValue(), id.pciVendorId());
        assertEquals(number(text.get("ssvid")).intValue(), id.pciSubsystemVendorId());
        assertEquals(number(text.get("wctemp")).intValue(), id.warningTemperatureThresholdKelvin());
        assertEquals(number(text.get("cctemp")).intValue(), id.criticalTemperatureThresholdKelvin());
        // the literal values, so that a broken text parser cannot hide a broken decoder
        assertEquals("VHOSTD0001", id.serialNumber());
        assertEquals("QEMU NVMe Ctrl", id.modelNumber());
        assertEquals("7.2.22", id.firmwareRevision());
        assertEquals(0x1b36, id.pciVendorId());
        assertEquals(343, id.warningTemperatureThresholdKelvin());
    }

    @Test
    void shouldTrimAndMaskStringsWhenDeviceSendsGarbage() {
        byte[] data = new byte[4096];
        byte[] sn = {' ', 'A', 'B', 0x01, 'C', ' ', ' ', 0, 0};
        System.arraycopy(sn, 0, data, IdentifyController.SN_OFFSET, sn.length);
        data[IdentifyController.MN_OFFSET] = (byte) 0xC3;
        IdentifyController id = IdentifyController.decode(data);
        assertEquals("AB?C", id.serialNumber());
        assertEquals("?", id.modelNumber());
        assertEquals("", id.firmwareRevision());
        assertThrows(IllegalArgumentException.class, () -> IdentifyController.decode(new byte[512]));
    }
}
