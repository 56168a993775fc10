//! The write path of a [`BlockFlash`] (the KV swap area): synchronous
//! `pwrite`s, staged through aligned memory under O_DIRECT, made durable
//! by `fdatasync` or O_DSYNC.

use super::*;

impl BlockFlash {
    pub(super) fn write_error(&self, e: io::Error) -> BlockFlashError {
        let reason = if e.raw_os_error() == Some(libc::EBADF) {
            Reason::ReadOnly
        } else {
            Reason::Write
        };
        let err = BlockFlashError::io(reason, e);
        match &self.path {
            Some(p) => err.at(p),
            None => err,
        }
    }
}

impl FlashWrite for BlockFlash {
    /// A synchronous `pwrite` of whole blocks inside the device (not bounded
    /// by `max_transfer`), staged through aligned memory under O_DIRECT.
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), BlockFlashError> {
        flash::admit_write(&self.geometry, offset, data.len())?;
        let len = u64::try_from(data.len()).map_err(|_| ErrorKind::OutOfRange)?;
        let pos = self.window.position(offset).ok_or(ErrorKind::OutOfRange)?;
        if self.report.direct.is_direct() {
            let chunk = self.geometry.max_transfer as usize;
            if self.write_stage.is_none() {
                let (m, _) = Mapping::anonymous(chunk, HugePages::Off)
                    .map_err(|e| BlockFlashError::io(Reason::Bounce, e))?;
                self.write_stage = Some(m);
            }
            let mut at = pos;
            for piece in data.chunks(chunk) {
                let stage = self
                    .write_stage
                    .as_mut()
                    .and_then(|m| m.as_mut_slice().get_mut(..piece.len()))
                    .ok_or(ErrorKind::Other)?;
                stage.copy_from_slice(piece);
                let result = self.file.write_all_at(stage, at);
                result.map_err(|e| self.write_error(e))?;
                at += piece.len() as u64;
            }
        } else {
            self.file
                .write_all_at(data, pos)
                .map_err(|e| self.write_error(e))?;
        }
        if self.write_mode == WriteMode::Dsync && !self.dsync_on_open {
            self.file
                .sync_data()
                .map_err(|e| BlockFlashError::io(Reason::Sync, e))?;
        }
        bump(&mut self.stats.writes, 1);
        bump(&mut self.stats.bytes_written, len);
        Ok(())
    }

    fn sync(&mut self) -> Result<(), BlockFlashError> {
        if self.write_mode == WriteMode::SyncOnDemand {
            self.file
                .sync_data()
                .map_err(|e| BlockFlashError::io(Reason::Sync, e))?;
        }
        bump(&mut self.stats.syncs, 1);
        Ok(())
    }
}
