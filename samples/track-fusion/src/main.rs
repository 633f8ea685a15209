//! `track-fusion`: a realistic JSON job built on the `vauban-guest` SDK (`job!`): a
//! preview-1 command, and a component of the `vauban:job` world on wasm32-wasip2.
//!
//! Input (stdin), one JSON document:
//! `{"readings":[{"sensor":"radar-1","track":"T1","t":0.0,"x":1.0,"y":2.0,"sigma":0.5}, ...]}`
//!
//! Output (stdout), one compact JSON line, tracks sorted by id:
//! `{"tracks":[{"track":"T1","x":..,"y":..,"sigma":..,"sensors":["eo-2","radar-1"],"readings":2,"t_last":..}]}`
//!
//! Each track fuses its readings by inverse-variance weighting: with weights `w = 1/sigma²`,
//! `x = Σ(w·x)/Σw`, `y = Σ(w·y)/Σw` and `sigma = sqrt(1/Σw)`; `sensors` lists the distinct
//! sensors that saw the track (sorted), `readings` counts its readings and `t_last` is the
//! latest `t`. It logs one `info` line `fused` with fields `readings` and `tracks`.
//!
//! What a host test expects: for `input.json` the output is exactly `expected.json` and the
//! exit code is 0; `{"readings":[]}` gives `{"tracks":[]}`; a reading with `sigma <= 0` or a
//! non-finite value, or input that is not this JSON shape, exits 2 (bad input) with an
//! `error` log line on stderr naming the offending reading's index. Both builds give the same
//! stdout, stderr and exit code through Vauban (which calls the component's `run`); run as a
//! plain `wasi:cli/run` command, the component can only exit with 1.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use vauban_guest::Error;

/// The job input.
#[derive(Deserialize)]
struct Input {
    readings: Vec<Reading>,
}

/// One sensor's estimate of a track's position at time `t`, with standard deviation `sigma`.
#[derive(Deserialize)]
struct Reading {
    sensor: String,
    track: String,
    t: f64,
    x: f64,
    y: f64,
    sigma: f64,
}

/// The job output.
#[derive(Serialize)]
struct Output {
    tracks: Vec<Track>,
}

/// The fused estimate of one track.
#[derive(Serialize)]
struct Track {
    track: String,
    x: f64,
    y: f64,
    sigma: f64,
    sensors: Vec<String>,
    readings: usize,
    t_last: f64,
}

/// Running sums for one track.
#[derive(Default)]
struct Accumulator {
    weight: f64,
    weighted_x: f64,
    weighted_y: f64,
    sensors: BTreeSet<String>,
    readings: usize,
    t_last: Option<f64>,
}

// wasm32-wasip1: a command (stdin to stdout). wasm32-wasip2: a component of the vauban:job world
// whose `run` export Vauban calls, and the same command as `wasi:cli/run`.
vauban_guest::job!(track_fusion);

/// The job: fuses the readings and logs how many went into how many tracks.
fn track_fusion(input: Input) -> Result<Output, Error> {
    let count = input.readings.len();
    let output = fuse(input.readings)?;
    vauban_guest::info!("fused", readings = count, tracks = output.tracks.len());
    Ok(output)
}

/// Fuses readings into tracks, sorted by track id.
fn fuse(readings: Vec<Reading>) -> Result<Output, Error> {
    let mut tracks: BTreeMap<String, Accumulator> = BTreeMap::new();
    for (index, reading) in readings.into_iter().enumerate() {
        let weight = validate(index, &reading)?;
        let acc = tracks.entry(reading.track).or_default();
        acc.weight += weight;
        acc.weighted_x += weight * reading.x;
        acc.weighted_y += weight * reading.y;
        acc.sensors.insert(reading.sensor);
        acc.readings += 1;
        acc.t_last = Some(acc.t_last.map_or(reading.t, |t| t.max(reading.t)));
    }

    let tracks = tracks
        .into_iter()
        .map(|(id, acc)| {
            let track = Track {
                x: acc.weighted_x / acc.weight,
                y: acc.weighted_y / acc.weight,
                sigma: (1.0 / acc.weight).sqrt(),
                sensors: acc.sensors.into_iter().collect(),
                readings: acc.readings,
                t_last: acc.t_last.unwrap_or_default(),
                track: id,
            };
            if [track.x, track.y, track.sigma]
                .iter()
                .all(|v| v.is_finite())
            {
                Ok(track)
            } else {
                Err(Error::failed(format!(
                    "track {}: fused estimate overflowed",
                    track.track
                )))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Output { tracks })
}

/// Checks one reading and returns its weight `1/sigma²`.
fn validate(index: usize, r: &Reading) -> Result<f64, Error> {
    for (name, value) in [("t", r.t), ("x", r.x), ("y", r.y), ("sigma", r.sigma)] {
        if !value.is_finite() {
            return Err(Error::bad_input(format!(
                "reading {index}: {name} is not finite"
            )));
        }
    }
    if r.sigma <= 0.0 {
        return Err(Error::bad_input(format!(
            "reading {index}: sigma must be positive, got {:?}",
            r.sigma
        )));
    }
    let weight = 1.0 / (r.sigma * r.sigma);
    // A tiny sigma overflows the weight, a huge one underflows it to zero.
    if !weight.is_finite() || weight == 0.0 {
        return Err(Error::bad_input(format!(
            "reading {index}: sigma {:?} is out of range",
            r.sigma
        )));
    }
    Ok(weight)
}
