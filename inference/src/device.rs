//! Where the model runs.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;
use serde::{Deserialize, Serialize};

use crate::error::ModelError;

/// The compute device a model is loaded onto.
///
/// `Cpu` always works. `Cuda` uses the first GPU and needs the crate's `cuda` feature; without
/// it, loading fails with [`ModelError::DeviceUnavailable`] instead of silently falling back,
/// so a deployment never runs on a device it did not ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// The host CPU (candle's gemm backend, multi-threaded through rayon).
    #[default]
    Cpu,
    /// CUDA device 0.
    Cuda,
}

impl DeviceChoice {
    /// Opens the candle device, or says why it cannot be opened.
    pub(crate) fn open(self) -> Result<Device, ModelError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda => open_cuda(),
        }
    }

    /// The choice matching an already opened device.
    pub(crate) fn of(device: &Device) -> DeviceChoice {
        if device.is_cuda() {
            DeviceChoice::Cuda
        } else {
            DeviceChoice::Cpu
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda() -> Result<Device, ModelError> {
    Device::new_cuda(0).map_err(|e| ModelError::DeviceUnavailable {
        device: DeviceChoice::Cuda,
        reason: format!("cannot open CUDA device 0 ({e}); check the driver or use device cpu"),
    })
}

#[cfg(not(feature = "cuda"))]
fn open_cuda() -> Result<Device, ModelError> {
    Err(ModelError::DeviceUnavailable {
        device: DeviceChoice::Cuda,
        reason: "this build has no CUDA support; rebuild with the `cuda` cargo feature or use device cpu"
            .to_owned(),
    })
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
        })
    }
}

/// Error for a device name other than `cpu` or `cuda`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device {0:?}: expected \"cpu\" or \"cuda\"")]
pub struct UnknownDevice(pub String);

impl FromStr for DeviceChoice {
    type Err = UnknownDevice;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda),
            _ => Err(UnknownDevice(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_case_insensitively_and_round_trip() {
        assert_eq!("CPU".parse::<DeviceChoice>(), Ok(DeviceChoice::Cpu));
        assert_eq!(" cuda ".parse::<DeviceChoice>(), Ok(DeviceChoice::Cuda));
        assert_eq!(
            DeviceChoice::Cuda.to_string().parse(),
            Ok(DeviceChoice::Cuda)
        );
        assert!("tpu".parse::<DeviceChoice>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let err = DeviceChoice::Cuda.open().err().map(|e| e.to_string());
        let message = err.unwrap_or_default();
        assert!(message.contains("`cuda` cargo feature"), "{message}");
    }
}
