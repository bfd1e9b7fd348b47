// Writes a FIT file with Garmin's own encoder (@garmin/fitsdk), shaped like what a Garmin
// watch syncs: a monitoring file with heart rate (full and compressed timestamps), steps
// counted cumulatively, resting heart rate, stress, SpO2, respiration, sleep levels,
// beat-to-beat intervals and an activity record. Used by the vendor-file tests:
//   node e2e/make-fit.mjs <out.fit> <start UNIX seconds>
import { writeFileSync } from 'node:fs';
import { Encoder, Profile } from '@garmin/fitsdk';

const [out, startArg] = process.argv.slice(2);
if (!out || !startArg) {
  console.error('usage: node make-fit.mjs <out.fit> <start UNIX seconds>');
  process.exit(2);
}
const t0 = Number(startArg);
const at = (s) => new Date((t0 + s) * 1000);
// Seconds since the FIT epoch (1989-12-31T00:00:00Z), low 16 bits.
const t16 = (s) => (t0 + s - 631065600) & 0xffff;
const M = Profile.MesgNum;
const e = new Encoder();
e.onMesg(M.FILE_ID, {
  type: 'monitoringB',
  manufacturer: 'garmin',
  product: 3113,
  serialNumber: 3456789012,
  timeCreated: at(0),
});
e.onMesg(M.DEVICE_INFO, {
  timestamp: at(0), deviceIndex: 'creator', manufacturer: 'garmin', product: 3113, serialNumber: 3456789012,
  softwareVersion: 12.3, batteryStatus: 'good',
});
// A sensor paired to the watch (not the file's creator): its firmware is not the watch's.
e.onMesg(M.DEVICE_INFO, { timestamp: at(0), deviceIndex: 1, softwareVersion: 4.1 });
e.onMesg(M.MONITORING, { timestamp: at(0), heartRate: 61 });
e.onMesg(M.MONITORING, { timestamp16: t16(60), heartRate: 63 });
// Steps are "cycles" of a walking activity (the profile stores cycles with scale 2 and the
// steps sub-field with scale 1: a step count n is written as n / 2 cycles).
e.onMesg(M.MONITORING, { timestamp: at(120), activityType: 'walking', cycles: 40 / 2 });
e.onMesg(M.MONITORING, { timestamp: at(180), activityType: 'walking', cycles: 100 / 2 });
e.onMesg(M.MONITORING_HR_DATA, { timestamp: at(200), restingHeartRate: 52, currentDayRestingHeartRate: 52 });
e.onMesg(M.STRESS_LEVEL, { stressLevelValue: 35, stressLevelTime: at(240) });
e.onMesg(M.STRESS_LEVEL, { stressLevelValue: -1, stressLevelTime: at(300) });
e.onMesg(M.SPO2_DATA, { timestamp: at(360), readingSpo2: 96, readingConfidence: 3, mode: 'spotCheck' });
e.onMesg(M.RESPIRATION_RATE, { timestamp: at(420), respirationRate: 14.5 });
e.onMesg(M.HRV, { time: [0.8, 0.81, 0.79] });
for (const [s, level] of [[3600, 'light'], [3660, 'light'], [3720, 'deep'], [3780, 'rem']]) {
  e.onMesg(M.SLEEP_LEVEL, { timestamp: at(s), sleepLevel: level });
}
e.onMesg(M.RECORD, { timestamp: at(4000), heartRate: 120 });
writeFileSync(out, e.close());
