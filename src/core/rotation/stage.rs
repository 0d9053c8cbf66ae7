//! TPP's rotation stage codes and process statuses (`docs/rotation-and-fleet.md` §1), the
//! values the store keeps and every face shows.

/// TPP's `RotationStage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Scheduled = 0,
    ProvisionNewPublicKeys = 10200,
    WaitManualAuthorizedKeyConfirmation = 10250,
    ProvisionPrivateKeys = 10300,
    WaitManualPrivateKeyConfirmation = 10350,
    /// keyport spends the policy's grace here: devices have time to pick the new key up
    /// before the old public key goes.
    WaitManualDeviceSyncConfirmation = 10355,
    ReconfigureServers = 10400,
    RemoveOldPublicKeys = 10500,
    Complete = 10600,
    Failed = 10101,
    KeyLengthNotSupported = 10102,
    ConflictingPolicies = 10103,
    NotEnoughPermissions = 10104,
    RemediationNotAvailable = 10105,
    RestoreOldPublicKeys = 90200,
    WaitManualRestoreAuthorizedKeyConfirmation = 90240,
    WaitManualRestorePrivateKeyConfirmation = 90250,
    WaitManualRestoreDeviceSyncConfirmation = 90255,
    RestorePrivateKeys = 90300,
    ReconfigureServersOnRestore = 90400,
    RemoveNewPublicKeys = 90500,
}

const ALL: &[Stage] = &[
    Stage::Scheduled,
    Stage::ProvisionNewPublicKeys,
    Stage::WaitManualAuthorizedKeyConfirmation,
    Stage::ProvisionPrivateKeys,
    Stage::WaitManualPrivateKeyConfirmation,
    Stage::WaitManualDeviceSyncConfirmation,
    Stage::ReconfigureServers,
    Stage::RemoveOldPublicKeys,
    Stage::Complete,
    Stage::Failed,
    Stage::KeyLengthNotSupported,
    Stage::ConflictingPolicies,
    Stage::NotEnoughPermissions,
    Stage::RemediationNotAvailable,
    Stage::RestoreOldPublicKeys,
    Stage::WaitManualRestoreAuthorizedKeyConfirmation,
    Stage::WaitManualRestorePrivateKeyConfirmation,
    Stage::WaitManualRestoreDeviceSyncConfirmation,
    Stage::RestorePrivateKeys,
    Stage::ReconfigureServersOnRestore,
    Stage::RemoveNewPublicKeys,
];

impl Stage {
    pub fn code(self) -> i64 {
        self as i64
    }

    pub fn from_code(code: i64) -> Option<Stage> {
        ALL.iter().copied().find(|s| s.code() == code)
    }

    /// TPP's name of the stage.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Scheduled => "Scheduled",
            Stage::ProvisionNewPublicKeys => "ProvisionNewPublicKeys",
            Stage::WaitManualAuthorizedKeyConfirmation => "WaitManualAuthorizedKeyConfirmation",
            Stage::ProvisionPrivateKeys => "ProvisionPrivateKeys",
            Stage::WaitManualPrivateKeyConfirmation => "WaitManualPrivateKeyConfirmation",
            Stage::WaitManualDeviceSyncConfirmation => "WaitManualDeviceSyncConfirmation",
            Stage::ReconfigureServers => "ReconfigureServers",
            Stage::RemoveOldPublicKeys => "RemoveOldPublicKeys",
            Stage::Complete => "Complete",
            Stage::Failed => "Failed",
            Stage::KeyLengthNotSupported => "KeyLengthNotSupported",
            Stage::ConflictingPolicies => "ConflictingPolicies",
            Stage::NotEnoughPermissions => "NotEnoughPermissions",
            Stage::RemediationNotAvailable => "RemediationNotAvailable",
            Stage::RestoreOldPublicKeys => "RestoreOldPublicKeys",
            Stage::WaitManualRestoreAuthorizedKeyConfirmation => "WaitManualRestoreAuthorizedKeyConfirmation",
            Stage::WaitManualRestorePrivateKeyConfirmation => "WaitManualRestorePrivateKeyConfirmation",
            Stage::WaitManualRestoreDeviceSyncConfirmation => "WaitManualRestoreDeviceSyncConfirmation",
            Stage::RestorePrivateKeys => "RestorePrivateKeys",
            Stage::ReconfigureServersOnRestore => "ReconfigureServersOnRestore",
            Stage::RemoveNewPublicKeys => "RemoveNewPublicKeys",
        }
    }

    /// The 90xxx path.
    pub fn is_rollback(self) -> bool {
        self.code() >= 90000
    }

    /// 10101–10105.
    pub fn is_error(self) -> bool {
        (10101..=10105).contains(&self.code())
    }

    /// A stage that waits for a person or a device (`ConfirmSelfServiceKeyInstallation`).
    pub fn waits_for_confirmation(self) -> bool {
        matches!(self, Stage::WaitManualAuthorizedKeyConfirmation | Stage::WaitManualPrivateKeyConfirmation)
    }

    /// The hook stage run while in this stage, if any.
    pub fn hook(self) -> Option<&'static str> {
        Some(match self {
            Stage::Scheduled => "pre",
            Stage::ProvisionNewPublicKeys => "provision-public",
            Stage::ProvisionPrivateKeys => "provision-private",
            Stage::ReconfigureServers => "verify",
            Stage::RemoveOldPublicKeys => "remove-old",
            Stage::Complete => "post",
            s if s.is_rollback()
                && !matches!(
                    s,
                    Stage::WaitManualRestoreAuthorizedKeyConfirmation
                        | Stage::WaitManualRestorePrivateKeyConfirmation
                        | Stage::WaitManualRestoreDeviceSyncConfirmation
                ) =>
            {
                "rollback"
            }
            _ => return None,
        })
    }
}

/// TPP's keyset `ProcessStatus`. keyport shows 0 when no rotation is open.
pub mod status {
    pub const IDLE: i64 = 0;
    pub const ROTATING: i64 = 5;
    pub const FAILED_TO_ROTATE: i64 = 6;
    pub const KEY_OPERATION_RUNNING: i64 = 7;
    /// Waiting for a person or a device (a confirmation).
    pub const ROTATION_SUSPENDED: i64 = 8;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_classify() {
        for s in ALL {
            assert_eq!(Stage::from_code(s.code()), Some(*s));
        }
        assert_eq!(Stage::from_code(12345), None);
        assert!(Stage::RemoveNewPublicKeys.is_rollback() && !Stage::Complete.is_rollback());
        assert!(Stage::Failed.is_error() && Stage::RemediationNotAvailable.is_error() && !Stage::Complete.is_error());
        assert_eq!(Stage::ProvisionNewPublicKeys.hook(), Some("provision-public"));
        assert_eq!(Stage::RestoreOldPublicKeys.hook(), Some("rollback"));
        assert_eq!(Stage::WaitManualPrivateKeyConfirmation.hook(), None);
    }
}
