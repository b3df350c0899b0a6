//! Conversions between DIMSE commands and Python dicts keyed by pydicom keywords.

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::dimse::Command;

pub fn to_dict<'py>(py: Python<'py>, c: &Command) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("CommandField", c.command_field)?;
    macro_rules! opt {
        ($key:literal, $v:expr) => {
            if let Some(v) = &$v {
                d.set_item($key, v)?;
            }
        };
    }
    opt!("AffectedSOPClassUID", c.affected_sop_class_uid);
    opt!("RequestedSOPClassUID", c.requested_sop_class_uid);
    opt!("MessageID", c.message_id);
    opt!("MessageIDBeingRespondedTo", c.message_id_being_responded_to);
    opt!("MoveDestination", c.move_destination);
    opt!("Priority", c.priority);
    opt!("Status", c.status);
    opt!("ErrorComment", c.error_comment);
    opt!("ErrorID", c.error_id);
    opt!("AffectedSOPInstanceUID", c.affected_sop_instance_uid);
    opt!("RequestedSOPInstanceUID", c.requested_sop_instance_uid);
    opt!("EventTypeID", c.event_type_id);
    opt!("ActionTypeID", c.action_type_id);
    opt!("NumberOfRemainingSuboperations", c.remaining);
    opt!("NumberOfCompletedSuboperations", c.completed);
    opt!("NumberOfFailedSuboperations", c.failed);
    opt!("NumberOfWarningSuboperations", c.warning);
    opt!("MoveOriginatorApplicationEntityTitle", c.move_originator_ae_title);
    opt!("MoveOriginatorMessageID", c.move_originator_message_id);
    if !c.offending_element.is_empty() {
        d.set_item("OffendingElement", c.offending_element.clone())?;
    }
    if !c.attribute_identifier_list.is_empty() {
        d.set_item("AttributeIdentifierList", c.attribute_identifier_list.clone())?;
    }
    d.set_item("HasDataset", c.has_dataset)?;
    Ok(d)
}

pub fn from_dict(d: &Bound<'_, PyDict>) -> PyResult<Command> {
    fn get<'py, T: for<'a> pyo3::FromPyObject<'a, 'py>>(d: &Bound<'py, PyDict>, k: &str) -> PyResult<Option<T>> {
        match d.get_item(k)? {
            Some(v) if !v.is_none() => Ok(Some(v.extract::<T>().map_err(Into::into)?)),
            _ => Ok(None),
        }
    }
    let field: u16 = get(d, "CommandField")?.ok_or_else(|| pyo3::exceptions::PyValueError::new_err("CommandField is required"))?;
    Ok(Command {
        command_field: field,
        affected_sop_class_uid: get(d, "AffectedSOPClassUID")?,
        requested_sop_class_uid: get(d, "RequestedSOPClassUID")?,
        message_id: get(d, "MessageID")?,
        message_id_being_responded_to: get(d, "MessageIDBeingRespondedTo")?,
        move_destination: get(d, "MoveDestination")?,
        priority: get(d, "Priority")?,
        has_dataset: false,
        status: get(d, "Status")?,
        offending_element: get(d, "OffendingElement")?.unwrap_or_default(),
        error_comment: get(d, "ErrorComment")?,
        error_id: get(d, "ErrorID")?,
        affected_sop_instance_uid: get(d, "AffectedSOPInstanceUID")?,
        requested_sop_instance_uid: get(d, "RequestedSOPInstanceUID")?,
        event_type_id: get(d, "EventTypeID")?,
        attribute_identifier_list: get(d, "AttributeIdentifierList")?.unwrap_or_default(),
        action_type_id: get(d, "ActionTypeID")?,
        remaining: get(d, "NumberOfRemainingSuboperations")?,
        completed: get(d, "NumberOfCompletedSuboperations")?,
        failed: get(d, "NumberOfFailedSuboperations")?,
        warning: get(d, "NumberOfWarningSuboperations")?,
        move_originator_ae_title: get(d, "MoveOriginatorApplicationEntityTitle")?,
        move_originator_message_id: get(d, "MoveOriginatorMessageID")?,
        other: Vec::new(),
    })
}
