//! Opening the sinks' outputs before a run: files (appending when the run resumes), FIFOs
//! opened lazily, standard output, TCP and Kafka writers.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use weir_operators::kafka;
use weir_operators::sink::{FileOutput, SharedWriter};

use super::resumes;
use crate::components::{Op, SinkTarget};
use crate::plan::Plan;

/// A file opened when first written to: the default dead-letter file (created only if a
/// record goes there), and FIFOs (opening one waits for a reader, which must not hold up the
/// start of the run).
struct LazyFile {
    path: PathBuf,
    append: bool,
    file: Option<FileOutput>,
}

impl Write for LazyFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.file.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            self.file = Some(open_output(&self.path, self.append)?);
        }
        self.file.as_mut().expect("opened").write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

/// Opens a sink's file: truncated, or (resuming) appended to after what it holds.
fn open_output(path: &Path, append: bool) -> std::io::Result<FileOutput> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!append)
        .append(append)
        .open(path)?;
    let len = if append { f.metadata()?.len() } else { 0 };
    Ok(FileOutput::new(f, len))
}

fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}

/// Opens every sink's writer before the run starts, so a bad path fails early. In a cluster,
/// only process 0 writes.
pub(super) fn open_writers(
    plan: &Plan,
    process: usize,
) -> Result<Vec<Option<SharedWriter>>, String> {
    let append = resumes(plan);
    if append && process == 0 {
        eprintln!(
            "weir: resuming from where an earlier run left off (Kafka offsets committed, Kinesis \
             positions kept): file sinks append to their output (delete the output files, and the \
             consumer group or positions directory, to start over)"
        );
    }
    plan.nodes
        .iter()
        .map(|n| match &n.op {
            Op::Sink(_) if process > 0 => Ok(None),
            // Under checkpoints a file sink writes pending files, published per checkpoint.
            Op::Sink(s) if plan.checkpoint.is_some() && crate::checkpoints::exactly_once(&s.target) => {
                Ok(None)
            }
            Op::Sink(s) => {
                let w = match &s.target {
                    SinkTarget::Null | SinkTarget::Parquet(_) => return Ok(None),
                    SinkTarget::Stdout => SharedWriter::stdout(),
                    SinkTarget::File(path) => {
                        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                            std::fs::create_dir_all(dir).map_err(|e| {
                                format!(
                                    "sink `{}`: cannot create directory {}: {e}",
                                    n.id,
                                    dir.display()
                                )
                            })?;
                        }
                        if is_fifo(path) {
                            eprintln!(
                                "weir: sink `{}` writes to the FIFO {}: its first write waits for a reader",
                                n.id,
                                path.display()
                            );
                            SharedWriter::new(Box::new(LazyFile {
                                path: path.clone(),
                                append,
                                file: None,
                            }))
                        } else {
                            let f = open_output(path, append).map_err(|e| {
                                format!("sink `{}`: cannot create {}: {e}", n.id, path.display())
                            })?;
                            SharedWriter::new(Box::new(f))
                        }
                    }
                    SinkTarget::LazyFile(path) => SharedWriter::new(Box::new(LazyFile {
                        path: path.clone(),
                        append,
                        file: None,
                    })),
                    SinkTarget::Kafka {
                        brokers,
                        topic,
                        key,
                        options,
                        ..
                    } => {
                        let config = kafka::client_config(brokers, options);
                        let m = kafka::Messages::new(&config, topic)
                            .and_then(|m| m.check_topic(&config).map(|()| m))
                            .map_err(|e| format!("sink `{}`: {e}", n.id))?;
                        SharedWriter::messages(m, key.clone())
                    }
                    SinkTarget::Kinesis { conn, key, .. } => SharedWriter::message_out(std::sync::Arc::new(
                        weir_cloud::kinesis::sink::KinesisOut::open(conn, key.clone())
                            .map_err(|e| format!("sink `{}`: {e}", n.id))?,
                    )),
                    SinkTarget::PubSub {
                        conn,
                        topic,
                        ordering_key,
                        attributes,
                    } => SharedWriter::message_out(std::sync::Arc::new(
                        weir_cloud::pubsub::sink::PubSubOut::open(
                            conn,
                            topic,
                            ordering_key.clone(),
                            attributes.clone(),
                        )
                        .map_err(|e| format!("sink `{}`: {e}", n.id))?,
                    )),
                    SinkTarget::View {
                        path,
                        table,
                        key,
                        schema,
                    } => SharedWriter::new(Box::new(
                        weir_operators::view::ViewWriter::open(path, table, schema, key)
                            .map_err(|e| format!("sink `{}`: {e}", n.id))?,
                    )),
                    SinkTarget::Mqtt {
                        broker,
                        topic,
                        qos,
                        retain,
                    } => SharedWriter::new(Box::new(
                        weir_operators::mqtt::MqttWriter::connect(broker, topic, *qos, *retain)
                            .map_err(|e| format!("sink `{}`: {e}", n.id))?,
                    )),
                    SinkTarget::Tcp(address) => {
                        let stream = std::net::TcpStream::connect(address).map_err(|e| {
                            format!(
                                "sink `{}`: cannot connect to {address}: {e} (start the receiver first, or fix `address`)",
                                n.id
                            )
                        })?;
                        let _ = stream.set_nodelay(true);
                        SharedWriter::new(Box::new(BufWriter::with_capacity(1 << 16, stream)))
                    }
                };
                if let Some(h) = s.encoder.header().filter(|_| !w.is_messages()) {
                    w.write_all(&h)
                        .map_err(|e| format!("sink `{}`: {e}", n.id))?;
                }
                Ok(Some(w))
            }
            _ => Ok(None),
        })
        .collect()
}
